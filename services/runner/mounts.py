"""Per-group sandbox mounts: NanoClaw v1 §17.1, tightened.

| Container path | Host path | Main | Non-main |
|---|---|---|---|
| ``/workspace/group`` | ``<groups>/<folder>`` | rw | rw |
| ``/workspace/global`` | ``<groups>/global`` (only if it exists) | rw | ro |
| ``/home/agent/.claude`` | ``<sessions>/<folder>/.claude`` | rw | rw |
| ``/workspace/extra/<name>`` | validated ``container_config["additionalMounts"]`` | per allowlist | per allowlist |

Tightened against v1: no project-root mount, no ``store`` mount, no IPC or agent-runner-source mounts (IPC goes
over NATS), and nothing of other groups or of the WhatsApp session for anyone, main included. Extra mounts may
not overlap the data directory (it holds every group, the event store and the WhatsApp session) nor the
allowlist file. Run logs are not in the group folder (v1: ``<folder>/logs``) but in ``<data>/logs/runs/<folder>``,
which no sandbox can write.

Everything below ``<groups>`` and ``<sessions>`` is the agent's to change, so the host opens it only through
:mod:`services.harness.safepath` (no link followed, nothing but directories accepted; docs/agent-runs.md,
"Threat model").
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.harness.safepath import SafeDir
from services.runner.mount_allowlist import MountAllowlistLoader
from services.runner.policy import HOME
from services.runner.sandbox.base import Mount

GROUP_DIR = "/workspace/group"
GLOBAL_DIR = "/workspace/global"
CLAUDE_DIR = f"{HOME}/.claude"
EXTRA_DIR = "/workspace/extra"

logger = logging.getLogger(__name__)
_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # the router's folder rule (services may not share code)


def check_folder(folder: str) -> str:
    """Return ``folder`` if it is a valid group folder name (not ``global``), else raise ValueError."""
    if not isinstance(folder, str) or not _FOLDER.fullmatch(folder) or folder.lower() == "global":
        raise ValueError(f"invalid group folder {folder!r}")
    return folder


@dataclass(frozen=True)
class RunnerPaths:
    """Host directories. ``protected``: no extra mount may equal, contain or lie inside these. ``logs_dir``: where
    run logs go (``<logs_dir>/<folder>/``; None: none are written)."""

    groups_dir: Path
    sessions_dir: Path
    protected: tuple[Path, ...] = ()
    logs_dir: Path | None = None

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> "RunnerPaths":
        """``<data>/groups``, ``<data>/sessions`` and ``<data>/logs/runs``; the whole data dir is protected."""
        data = Path(data_dir).absolute()
        return cls(groups_dir=data / "groups", sessions_dir=data / "sessions", protected=(data,),
                   logs_dir=data / "logs" / "runs")

    def group_dir(self, folder: str) -> Path:
        return Path(self.groups_dir).absolute() / check_folder(folder)

    def claude_dir(self, folder: str) -> Path:
        """``<sessions>/<folder>/.claude``; its parent is HOME for the process backend."""
        return Path(self.sessions_dir).absolute() / check_folder(folder) / ".claude"

    def global_dir(self) -> Path:
        return Path(self.groups_dir).absolute() / "global"

    def run_log_dir(self, folder: str) -> Path | None:
        """``<logs_dir>/<folder>``: host-written, outside every tree a sandbox can write."""
        return None if self.logs_dir is None else Path(self.logs_dir).absolute() / check_folder(folder)


def prepare_dirs(folder: str, paths: RunnerPaths, owner: tuple[int, int] | None = None) -> None:
    """Create the group folder and the session ``.claude`` dir if missing (mounts need existing sources).

    ``owner``: the host ``(uid, gid)`` of the sandbox user. When the runner is root, these two directories (not
    their contents) are handed to it, since a root-owned 0755 folder is read-only for the agent. A non-root
    runner cannot chown: run it as that uid.

    ``<groups>`` and ``<sessions>`` are the host's; every name below them is opened without following links and
    chowned through its descriptor, so whatever an agent left there (a link to a host directory, a FIFO) is
    refused, never created, written or chowned through.

    Raises:
        UnsafePath: ``<folder>``, ``<folder>/.claude`` or ``<sessions>/<folder>`` is not a real directory.
        ValueError: an invalid folder name.
    """
    check_folder(folder)
    for root, rel in ((paths.groups_dir, folder), (paths.sessions_dir, f"{folder}/.claude")):
        with SafeDir.open_root(root, create=True) as top, top.subdir(rel, create=True) as d:
            if owner is not None and os.geteuid() == 0:
                d.chown(*owner)


def global_is_mountable(paths: RunnerPaths) -> bool:
    """Whether ``<groups>/global`` is a real directory (a link there, even the operator's, is not mounted: the
    engine would follow it at mount time)."""
    try:
        with SafeDir.open_root(paths.groups_dir) as groups:
            found = groups.kind("global")
    except FileNotFoundError:
        return False
    if found not in (None, "a directory"):
        logger.warning("%s is %s, not a directory: not mounted", paths.global_dir(), found)
    return found == "a directory"


def build_mounts(folder: str, is_main: bool, container_config: dict[str, Any] | None, paths: RunnerPaths,
                 allowlist: MountAllowlistLoader) -> list[Mount]:
    """The mounts for one run (see the table above). Reads the filesystem only to check that the global dir
    is a directory and to validate extra mounts (realpath). Rejected extra mounts are logged and skipped.

    Raises:
        ValueError: an invalid folder name.
    """
    mounts = [Mount(str(paths.group_dir(folder)), GROUP_DIR, read_only=False)]
    if global_is_mountable(paths):
        mounts.append(Mount(str(paths.global_dir()), GLOBAL_DIR, read_only=not is_main))
    mounts.append(Mount(str(paths.claude_dir(folder)), CLAUDE_DIR, read_only=False))
    requested = (container_config or {}).get("additionalMounts") or []
    if not isinstance(requested, list):
        requested = [requested]  # rejected one by one as malformed
    protected = [*paths.protected, paths.groups_dir, paths.sessions_dir]
    taken = {m.container for m in mounts}
    for decision in allowlist.validate_all(requested, folder, is_main, protected):
        target = f"{EXTRA_DIR}/{decision.container}"
        if target in taken:  # two requests for one name: the first wins (docker refuses duplicate targets)
            logger.warning("Additional mount REJECTED for group %s: %s is already mounted", folder, target)
            continue
        taken.add(target)
        mounts.append(Mount(decision.host or "", target, read_only=decision.read_only))
    return mounts
