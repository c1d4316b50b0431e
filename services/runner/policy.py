"""THE one place the sandbox hardening is pinned (stack-notes §3.1). Data only; the docker backend turns it
into ``docker run`` flags (``services.runner.sandbox.docker.docker_argv``).

What every agent container gets, and why:
- read-only root filesystem: the agent can write only to its mounts and ``/tmp``;
- ``--cap-drop=ALL`` and ``no-new-privileges``: no capabilities, and setuid binaries cannot regain any;
- a non-root user (``1000:1000``);
- pids, memory (swap pinned to the same value: no swap) and CPU limits;
- ``/tmp`` as a small tmpfs, ``noexec,nosuid,nodev``;
- no writable tmpfs at HOME: the only writable place under HOME is the mounted per-group ``.claude`` dir, so
  nothing the agent stores survives outside the group's own session directory;
- ``--init`` (the engine's docker-init reaps zombies and forwards SIGTERM; the image also has tini);
- labels ``nanoclaw.role=agent`` and ``nanoclaw.network=<network>`` (orphan clean-up: a runner removes only
  agents on its own sandbox network, never another installation's or test's) plus ``nanoclaw.run_id``/
  ``nanoclaw.group`` from the spec;
- the internal network only: the sole host address it reaches is the network's gateway;
- ``--log-driver=none``: the runner already streams stdout/stderr; the engine keeps no second copy of the
  conversation on its disk;
- the engine's default seccomp profile, never switched off (no ``seccomp=unconfined``, no ``--privileged``: the
  policy has no field that could say so), and no ``--userns=host`` (a remapping engine keeps remapping);
- ``--runtime=<runner.runtime>`` only when configured (e.g. ``runsc``: gVisor's user-space kernel); the engine's
  default otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from services.runner.config import RunnerConfig
from services.runner.sandbox.base import AGENT_ROLE, ROLE_LABEL, Limits

HOME = "/home/agent"
"""The agent image's HOME (stack-notes §4.5). ``<HOME>/.claude`` is the per-group session mount."""

TMPFS_OPTIONS = "rw,noexec,nosuid,nodev,mode=1777"
NETWORK_LABEL = "nanoclaw.network"


@dataclass(frozen=True)
class SandboxPolicy:
    """Hardening for every agent container. Invariants are checked at construction (``ValueError``):
    root filesystem read-only, ALL capabilities dropped, no-new-privileges on, a non-root user, and no tmpfs
    at ``/``, ``/home`` or HOME (or under HOME)."""

    network: str
    user: str = "1000:1000"
    limits: Limits = field(default_factory=Limits)
    read_only_root: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    no_new_privileges: bool = True
    init: bool = True
    tmpfs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({"/tmp": TMPFS_OPTIONS}))
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({ROLE_LABEL: AGENT_ROLE}))
    log_driver: str = "none"
    runtime: str | None = None

    def __post_init__(self) -> None:
        if not self.read_only_root or self.cap_drop != ("ALL",) or not self.no_new_privileges:
            raise ValueError("the sandbox policy must keep a read-only root, --cap-drop=ALL and no-new-privileges")
        if self.user.split(":")[0] in {"0", "root", ""}:
            raise ValueError("the sandbox never runs as root")
        for target in self.tmpfs:
            if target in {"/", "/home"} or target == HOME or target.startswith(HOME + "/"):
                raise ValueError(f"no writable tmpfs at {target}: HOME state lives only in the mounted .claude dir")
        if self.labels.get(ROLE_LABEL) != AGENT_ROLE:
            raise ValueError(f"the policy must label sandboxes {ROLE_LABEL}={AGENT_ROLE}")

    def tmpfs_options(self, target: str) -> str:
        """The tmpfs option string for ``target``; ``/tmp`` gets ``size=<limits.tmp_size>``."""
        opts = self.tmpfs[target]
        return f"{opts},size={self.limits.tmp_size}" if target == "/tmp" and "size=" not in opts else opts


def policy_from_config(config: RunnerConfig) -> SandboxPolicy:
    """The policy for ``config`` (its network, user and limits)."""
    limits = Limits(memory=config.memory, cpus=config.cpus, pids=config.pids_limit, tmp_size=config.tmp_size)
    labels = MappingProxyType({ROLE_LABEL: AGENT_ROLE, NETWORK_LABEL: config.network})
    return SandboxPolicy(network=config.network, user=config.user, limits=limits, labels=labels,
                         runtime=config.runtime)
