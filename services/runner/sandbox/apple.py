"""Apple Container backend (macOS 26+, Apple silicon): the ``container`` CLI, shaped as NanoClaw's
``skill/apple-container`` branch (stack-notes §3.5). Not runnable on Linux; argv and parsing are unit-tested.

Each sandbox is a lightweight VM, which is the isolation: ``container run`` has no ``--read-only``,
``--cap-drop``, ``--security-opt`` or ``--pids-limit``, so none are passed. Read-only mounts are
``--mount type=bind,source=…,target=…,readonly``, read-write ones ``-v host:container`` (directories only).
The host is reached at the VM bridge's gateway (192.168.64.1 by default), not at a Docker network gateway.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from services.runner.config import RunnerConfig
from services.runner.sandbox.base import (AGENT_ROLE, ROLE_LABEL, RUNTIME_REQUIRED, CommandExecutor, ExecProcess,
                                          SandboxError, SandboxSpec, SandboxUnavailable, exec_command, stop_then_kill,
                                          spawn, user_ids)

logger = logging.getLogger(__name__)

_GONE = ("not found", "notFound", "does not exist")


def apple_argv(spec: SandboxSpec, cli: str = "container") -> list[str]:
    """The ``container run`` argv for ``spec`` (pure): run options, user, limits, labels, env (sorted), workdir,
    mounts, image, command."""
    argv = [cli, "run", "-i", "--rm", "--name", spec.name]
    if spec.user:
        argv += ["--user", spec.user]
    if spec.limits:
        # container takes K/M/G suffixes; docker-style lowercase sizes are normalised.
        argv += ["--cpus", f"{spec.limits.cpus:g}", "--memory", spec.limits.memory.upper()]
    labels = {**spec.labels, ROLE_LABEL: AGENT_ROLE}
    for key in sorted(labels):
        argv += ["-l", f"{key}={labels[key]}"]
    for key in sorted(spec.env):
        argv += ["-e", f"{key}={spec.env[key]}"]
    if spec.workdir:
        argv += ["-w", spec.workdir]
    for m in spec.mounts:
        if m.read_only:
            argv += ["--mount", f"type=bind,source={m.host},target={m.container},readonly"]
        else:
            argv += ["-v", f"{m.host}:{m.container}"]
    return argv + [spec.image, *spec.command]


def parse_container_list(stdout: str) -> list[dict[str, Any]]:
    """``container ls --format json`` → ``[{"name", "status", "labels"}]``. Entries without an id are skipped.

    Raises:
        ValueError: the output is not a JSON array.
    """
    data = json.loads(stdout or "[]")
    if not isinstance(data, list):
        raise ValueError("expected a JSON array from `container ls --format json`")
    out = []
    for item in data:
        config = (item.get("configuration") or {}) if isinstance(item, dict) else {}
        if isinstance(config, dict) and isinstance(config.get("id"), str):
            out.append({"name": config["id"], "status": item.get("status"), "labels": config.get("labels") or {}})
    return out


class AppleContainerBackend:
    """Args: ``config`` (unused so far: the VM is the isolation, limits come with the spec); ``executor`` runs the
    management commands (tests pass a fake); ``cli``: the ``container`` program."""

    kind = "apple-container"

    def __init__(self, config: RunnerConfig | None = None, *, executor: CommandExecutor = exec_command,
                 cli: str = "container") -> None:
        self.config, self._executor, self._cli = config, executor, cli

    async def ensure_available(self) -> None:
        """``container system status``; if it fails, ``container system start`` once, then check again.

        Raises:
            SandboxUnavailable: ``"Container runtime is required but failed to start: <cause>"``.
        """
        try:
            status = await self._executor([self._cli, "system", "status"], timeout_s=10)
            if status.returncode == 0:
                return
            logger.info("Apple Container system not running; starting it")
            await self._executor([self._cli, "system", "start"], timeout_s=60)
            status = await self._executor([self._cli, "system", "status"], timeout_s=10)
        except (OSError, TimeoutError) as exc:
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: {exc!r}") from exc
        if status.returncode != 0:
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: {status.stderr.strip() or status.stdout.strip()}")

    async def run(self, spec: SandboxSpec) -> ExecProcess:
        return await spawn(spec.name, apple_argv(spec, self._cli))

    def host_owner(self) -> tuple[int, int] | None:
        """``runner.user`` as it is (the VM shares no user namespace with the host to shift it)."""
        return user_ids(self.config.user) if self.config else None

    async def stop(self, name: str, grace_s: float) -> None:
        """``container stop -t <grace> <name>``, then ``container kill <name>`` if that failed."""
        await stop_then_kill(self._executor, self._cli, name, grace_s, _GONE)

    async def _list(self, all_: bool) -> list[dict[str, Any]]:
        argv = [self._cli, "ls", *(["-a"] if all_ else []), "--format", "json"]
        result = await self._executor(argv, timeout_s=30)
        if result.returncode != 0:
            raise SandboxError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
        return parse_container_list(result.stdout)

    async def list_names(self, label: str) -> list[str]:
        key, _, value = label.partition("=")
        return [c["name"] for c in await self._list(True) if c["labels"].get(key) == value]

    async def remove_orphans(self) -> list[str]:
        """Stop every running ``nanoclaw-…`` container (v1 apple branch); failures are warnings."""
        try:
            running = [c["name"] for c in await self._list(False)
                       if c["status"] == "running" and c["name"].startswith("nanoclaw-")]
        except (SandboxError, ValueError, OSError, TimeoutError) as exc:
            logger.warning("Failed to clean up orphaned containers: %s", exc)
            return []
        stopped = []
        for name in running:
            try:
                await self.stop(name, 1)
                stopped.append(name)
            except (SandboxError, ValueError, OSError, TimeoutError) as exc:
                logger.warning("Failed to stop orphaned container %s: %s", name, exc)
        if stopped:
            logger.info("Stopped %d orphaned container(s): %s", len(stopped), ", ".join(stopped))
        return stopped
