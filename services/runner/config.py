"""Runner settings (the ``runner:`` section of config.yml).

Durations carry their unit in the name (``_ms`` milliseconds, ``_s`` seconds). The defaults are NanoClaw v1's
(§2: ``CONTAINER_TIMEOUT`` and ``IDLE_TIMEOUT`` 30 min, ``CONTAINER_MAX_OUTPUT_SIZE`` 10 MiB) and the
sandbox limits of stack-notes §3.1.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDLE_GRACE_MS = 30_000
"""v1 §19: the hard timeout is at least the idle timeout plus 30 s, so the graceful close always wins the race
with the hard kill (PR #639)."""

MOVED_TO_QUEUE = ("idle_timeout_ms", "task_close_delay_ms")
"""Keys that were ``runner.*`` and are ``queue.*`` now; an old config names the new key instead of a generic
"extra field" error."""
DEFAULT_IDLE_TIMEOUT_MS = 1_800_000
"""``queue.idle_timeout_ms``'s default (v1 ``IDLE_TIMEOUT``), for the hard-timeout floor when it is not set."""

_SIZE = re.compile(r"[1-9][0-9]*[bkmg]?", re.IGNORECASE)


class SandboxEndpoints(BaseModel):
    """Where sandboxes reach the bus when the deployment provides the sandbox network (docs/deploy.md, compose):
    NATS and the broker's model proxy are members of that network and are reached by name. The runner then
    creates no network, relay or firewall rule; it only checks that the network exists and is internal.

    Args:
        nats_urls: the NATS servers as sandboxes resolve them (``["nats://nats:4222"]``; a cluster: every node).
        model_proxy_url: the model proxy as sandboxes resolve it (``http://broker:8788``).
    """

    model_config = ConfigDict(extra="forbid")

    nats_urls: list[str] = Field(min_length=1)
    model_proxy_url: str = Field(pattern=r"^https?://[^/]+/?$")

    @field_validator("nats_urls")
    @classmethod
    def _nats(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.fullmatch(r"(nats|tls)://[^/,\s]+", url):
                raise ValueError(f"expected nats://host:port, got {url!r}")
        return v


class RunnerConfig(BaseModel):
    """Args:
        backend: ``docker`` (default), ``apple-container`` (macOS; argv only here) or ``process`` (trusted local
            mode: no isolation; chosen only explicitly, never as a fallback).
        image: the agent image.
        network: the internal Docker network the sandboxes join (created if missing, ``internal=True``).
        network_subnet: its IPv4 subnet; the first host address (the gateway, e.g. ``172.29.0.1``) is the only
            host address a sandbox can reach: the runner relays NATS and the model proxy there.
        memory: memory limit (docker size syntax, ``1g``); swap is pinned to the same value (no swap).
        cpus: CPU limit (cores).
        pids_limit: maximum processes in the sandbox.
        tmp_size: size of the ``/tmp`` tmpfs (docker size syntax).
        timeout_ms: hard timeout base; a group's ``container_config["timeout"]`` overrides it (see
            :meth:`hard_timeout_ms`).
        stop_grace_s: seconds between the graceful stop (SIGTERM) and the kill.
        close_grace_s: how long a run asked to close (``RunCloseRequested``) has to end: the close is sent again
            every second until the agent takes it (it may not be subscribed yet, e.g. just after a nats-server
            restart), and a run still alive after this is stopped (``stop_grace_s`` more, then killed). Keep
            ``close_grace_s + stop_grace_s`` below ``queue.close_timeout_ms`` (the queue's own deadline).
        mount_allowlist: the extra-mount allowlist (kept outside the project; never mounted).
        max_output_bytes: cap on the stdout and on the stderr kept for the run log, each.
        user: ``uid:gid`` the sandbox runs as; never root. Its writable mounts (group folder, session dir) must
            be writable by it: set it to the owner of the data directory when that is not 1000.
        model_proxy_url: the broker's model proxy as the runner reaches it (loopback in one process); sandboxes
            get it relayed at the network gateway, same port.
        sandbox_endpoints: None (default): the runner owns ``network`` and relays NATS and the model proxy onto
            its gateway. Set (the compose deployment): the deployment owns ``network`` and joins NATS and the
            model proxy to it; sandboxes use these addresses directly (see :class:`SandboxEndpoints`).
        runtime: the OCI runtime for sandboxes (``docker run --runtime``; docker backend only). None (default):
            the engine's default (runc). ``runsc`` runs each sandbox on gVisor's user-space kernel when it is
            installed; the runner refuses to start if the engine does not know the name. Behind the Docker API
            proxy, also allow it there (``NANOCLAW_DOCKER_PROXY__RUNTIMES``, docs/deploy.md).
        agent_command: process backend only: the argv that runs the agent instead of ``python -m sandbox.agent``
            (it speaks the same container protocol). None (default): the real agent. The fault campaign
            (tests/chaos, docs/reliability.md) runs a light protocol-speaking agent this way.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["docker", "apple-container", "process"] = "docker"
    image: str = Field("nanoclaw-agent:latest", min_length=1)
    network: str = Field("nanoclaw-sandbox", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    network_subnet: str = "172.29.0.0/24"
    memory: str = "1g"
    cpus: float = Field(1.0, gt=0)
    pids_limit: int = Field(256, ge=16)
    tmp_size: str = "64m"
    timeout_ms: int = Field(1_800_000, ge=1)
    stop_grace_s: int = Field(10, ge=0, le=300)
    close_grace_s: float = Field(15, gt=0, le=600)
    mount_allowlist: Path = Path("~/.config/nanoclaw/mount-allowlist.json")
    max_output_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    user: str = Field("1000:1000", pattern=r"^[0-9]+(:[0-9]+)?$")
    model_proxy_url: str = Field("http://127.0.0.1:8788", pattern=r"^https?://[^/]+/?$")
    sandbox_endpoints: SandboxEndpoints | None = None
    runtime: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    agent_command: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        """The queue owns the run lifecycle (issue 13): its idle keys moved to the ``queue:`` section."""
        if isinstance(data, dict):
            for key in MOVED_TO_QUEUE:
                if key in data:
                    raise ValueError(f"runner.{key} moved to queue.{key} (the queue closes idle runs now); "
                                     f"move the setting to the queue: section")
        return data

    @model_validator(mode="after")
    def _runtime_is_dockers(self) -> "RunnerConfig":
        if self.runtime is not None and self.backend != "docker":
            raise ValueError(f"runtime is a docker setting; backend {self.backend!r} has none")
        if self.agent_command is not None and self.backend != "process":
            raise ValueError(f"agent_command is a process-backend setting; backend {self.backend!r} runs the image")
        return self

    @field_validator("network_subnet")
    @classmethod
    def _subnet(cls, v: str) -> str:
        net = ipaddress.ip_network(v, strict=True)  # ValueError names the problem
        if net.version != 4 or net.num_addresses < 4:
            raise ValueError("expected an IPv4 subnet with room for a gateway and sandboxes, e.g. 172.29.0.0/24")
        return str(net)

    @field_validator("memory", "tmp_size")
    @classmethod
    def _size(cls, v: str) -> str:
        if not _SIZE.fullmatch(v):
            raise ValueError("expected a size such as 512m or 1g")
        return v.lower()

    @field_validator("user")
    @classmethod
    def _not_root(cls, v: str) -> str:
        if v.split(":")[0] == "0":
            raise ValueError("the sandbox never runs as root (uid 0)")
        return v

    def hard_timeout_ms(self, container_config: dict[str, Any] | None = None,
                        idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS) -> int:
        """v1 §19: ``max(group timeout or timeout_ms, idle_timeout_ms + 30 s)`` in ms (1,830,000 by default).
        ``idle_timeout_ms``: the queue's (``queue.idle_timeout_ms``), so its close always comes first."""
        group = (container_config or {}).get("timeout")
        base = group if isinstance(group, int) and not isinstance(group, bool) and group > 0 else self.timeout_ms
        return max(base, idle_timeout_ms + IDLE_GRACE_MS)
