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
allowlist file.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """Host directories. ``protected``: no extra mount may equal, contain or lie inside these."""

    groups_dir: Path
    sessions_dir: Path
    protected: tuple[Path, ...] = ()

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> "RunnerPaths":
        """``<data>/groups`` and ``<data>/sessions``; the whole data dir is protected."""
        data = Path(data_dir).absolute()
        return cls(groups_dir=data / "groups", sessions_dir=data / "sessions", protected=(data,))

    def group_dir(self, folder: str) -> Path:
        return Path(self.groups_dir).absolute() / check_folder(folder)

    def claude_dir(self, folder: str) -> Path:
        """``<sessions>/<folder>/.claude``; its parent is HOME for the process backend."""
        return Path(self.sessions_dir).absolute() / check_folder(folder) / ".claude"

    def global_dir(self) -> Path:
        return Path(self.groups_dir).absolute() / "global"


def prepare_dirs(folder: str, paths: RunnerPaths, owner: str | None = None) -> None:
    """Create the group folder, its ``logs`` dir and the session ``.claude`` dir (mounts need existing sources).

    ``owner``: the sandbox ``uid:gid`` (``runner.user``). When the runner is root, these directories (not their
    contents) are handed to it, since a root-owned 0755 folder is read-only for the agent. A non-root runner
    cannot chown: run it as the same uid as ``runner.user``.
    """
    dirs = [paths.group_dir(folder), paths.group_dir(folder) / "logs", paths.claude_dir(folder).parent,
            paths.claude_dir(folder)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    if owner and os.geteuid() == 0:
        uid, _, gid = owner.partition(":")
        for d in dirs:
            os.chown(d, int(uid), int(gid or uid))


def build_mounts(folder: str, is_main: bool, container_config: dict[str, Any] | None, paths: RunnerPaths,
                 allowlist: MountAllowlistLoader) -> list[Mount]:
    """The mounts for one run (see the table above). Reads the filesystem only to check that the global dir
    exists and to validate extra mounts (realpath). Rejected extra mounts are logged and skipped.

    Raises:
        ValueError: an invalid folder name.
    """
    mounts = [Mount(str(paths.group_dir(folder)), GROUP_DIR, read_only=False)]
    if paths.global_dir().is_dir():
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
