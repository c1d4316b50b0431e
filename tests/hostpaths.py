"""Snapshots of host trees, for "the host side changed nothing outside the agent's own trees" assertions.

``snapshot(root, skip=...)`` maps each path below ``root`` (relative, as str; ``"."`` is ``root`` itself) to what
an attacker could have changed through the host: type, owner, mode, and for regular files a content hash
(symlinks: their target). Symbolic links are never followed; ``skip`` paths (and everything below them) are left
out. ``decoy(path)`` makes a host directory a planted symlink may point at.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Iterable

Entry = tuple[str, int, int, int, str]


def _entry(path: Path, st: os.stat_result) -> Entry:
    if stat.S_ISLNK(st.st_mode):
        kind, detail = "link", os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        kind, detail = "file", hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISDIR(st.st_mode):
        kind, detail = "dir", ""
    else:
        kind, detail = "other", ""
    return kind, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), detail


def snapshot(root: Path, skip: Iterable[Path] = ()) -> dict[str, Entry]:
    skipped = {Path(p) for p in skip}
    found = {".": _entry(root, root.lstat())}
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(top) / name
            if path in skipped:
                continue
            found[str(path.relative_to(root))] = _entry(path, path.lstat())
        dirs[:] = [d for d in dirs if Path(top) / d not in skipped]
    return found


def decoy(path: Path) -> Path:
    """A host directory (root-only, 0700) holding a file: what an agent's planted link points at."""
    path.mkdir(parents=True)
    (path / "host-secret.txt").write_text("host data the agent must never change\n")
    os.chmod(path, 0o700)
    return path
