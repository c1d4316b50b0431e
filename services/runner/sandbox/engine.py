"""What the Docker engine adds to the sandbox's isolation, read from ``docker info`` (``GET /info``): its seccomp
profile, user-namespace remapping, rootless mode and OCI runtimes. docs/agent-runs.md ("Defence in depth") says
what each layer stops.

- ``SecurityOptions`` lists ``name=seccomp,profile=<default|builtin|path>`` when the engine filters syscalls,
  ``name=userns`` with ``dockerd --userns-remap``, ``name=rootless`` for a rootless daemon.
- With ``--userns-remap`` the engine keeps its state in ``<data-root>/<uid>.<gid>`` (the remapped root's host
  ids; dockerd(8), "--userns-remap"), so ``DockerRootDir`` gives the base: container uid ``u`` is host uid
  ``base + u``. That is whom the runner must hand the group's writable directories to.
- ``Runtimes`` maps runtime names (``runc``, ``runsc`` when gVisor is installed) to their binaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_REMAPPED_ROOT = re.compile(r"/([0-9]+)\.([0-9]+)/?$")


@dataclass(frozen=True)
class EngineSecurity:
    """``seccomp``: the engine applies a seccomp profile (``seccomp_profile``: ``default``, ``builtin`` or a
    path); ``userns``: user-namespace remapping is on, ``userns_base`` the host ``(uid, gid)`` of container id 0
    (None when it could not be read); ``rootless``: a rootless daemon; ``runtimes``: the OCI runtimes it knows;
    ``default_runtime``: the one used when none is named."""

    seccomp: bool
    seccomp_profile: str | None
    userns: bool
    userns_base: tuple[int, int] | None
    rootless: bool
    runtimes: frozenset[str]
    default_runtime: str

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> "EngineSecurity":
        options = [_option(o) for o in info.get("SecurityOptions") or []]
        seccomp = next((o for o in options if o.get("name") == "seccomp"), None)
        userns = any(o.get("name") == "userns" for o in options)
        root = _REMAPPED_ROOT.search(str(info.get("DockerRootDir") or "")) if userns else None
        return cls(seccomp=seccomp is not None, seccomp_profile=(seccomp or {}).get("profile"), userns=userns,
                   userns_base=(int(root[1]), int(root[2])) if root else None,
                   rootless=any(o.get("name") == "rootless" for o in options),
                   runtimes=frozenset(info.get("Runtimes") or {}), default_runtime=str(info.get("DefaultRuntime") or ""))

    def host_ids(self, uid: int, gid: int) -> tuple[int, int]:
        """The host ids of the container's ``uid``/``gid``: shifted by the remap base under ``userns``.

        Raises:
            ValueError: remapping is on but its base is unknown (an unusual ``data-root`` layout).
        """
        if not self.userns:
            return uid, gid
        if self.userns_base is None:
            raise ValueError("user-namespace remapping is on, but DockerRootDir does not end in <uid>.<gid>: "
                             "cannot tell which host ids the sandbox user has")
        return self.userns_base[0] + uid, self.userns_base[1] + gid


def _option(text: Any) -> dict[str, str]:
    """``"name=seccomp,profile=default"`` → ``{"name": "seccomp", "profile": "default"}``; engines before API 1.26
    list bare names (``"seccomp"``)."""
    if "=" not in str(text):
        return {"name": str(text)}
    pairs = (part.partition("=") for part in str(text).split(","))
    return {key: value for key, _, value in pairs}
