"""Group folder names and the paths built from them (as NanoClaw v1 ``group-folder.ts``).

A folder name becomes a directory under ``groups/`` and ``data/ipc/`` and a container mount, so it must never
be able to name anything outside those bases.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

FOLDER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""The whole name must match (used with ``fullmatch``; NanoClaw's ``^…$`` without a multi-line flag).
ASCII only: ``[A-Za-z0-9]`` in a Python pattern does not match other scripts' letters."""

MAX_FOLDER_LENGTH = 64
RESERVED_FOLDERS = frozenset({"global"})
"""``groups/global`` holds the CLAUDE.md template shared by non-main groups; no group may own it."""

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


class InvalidFolder(ValueError):
    """A group folder name was refused; the message names the folder and the problem."""


def validate_folder(name: str) -> str:
    """Return ``name`` unchanged if it is a safe group folder name, else raise :class:`InvalidFolder`.

    Rules (NanoClaw v1 ``isValidGroupFolder``): 1–64 characters from ``A-Z a-z 0-9 _ -``, starting with a
    letter or digit; no whitespace, ``/``, ``\\`` or ``..``; not ``global`` in any letter case. The pattern
    alone already excludes the separators and ``..``; they are checked first only so the error says why.

    Raises:
        InvalidFolder: with a message such as ``invalid group folder '../x': contains '..'``.
    """
    if not isinstance(name, str):
        raise InvalidFolder(f"invalid group folder {name!r}: not a string")
    problem = _folder_problem(name)
    if problem:
        raise InvalidFolder(f"invalid group folder {name!r}: {problem}")
    return name


def _folder_problem(name: str) -> str | None:
    # Ordered from most to least specific so the message points at the real mistake.
    if not name:
        return "empty"
    if any(ch.isspace() for ch in name):
        return "contains whitespace"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if name.lower() in RESERVED_FOLDERS:
        return "reserved name"
    if len(name) > MAX_FOLDER_LENGTH:
        return f"longer than {MAX_FOLDER_LENGTH} characters"
    if name[0] not in _ALNUM:
        return "must start with a letter or digit"
    if not FOLDER_PATTERN.fullmatch(name):
        return "only letters, digits, '_' and '-' are allowed"
    return None


def resolve_group_path(base: Path, folder: str) -> Path:
    """Return the absolute path of ``folder`` inside ``base`` (e.g. ``base/groups`` or ``base/data/ipc``).

    The folder is validated first, then the joined path is normalised lexically (like Node's
    ``path.resolve``: ``..`` collapsed, symlinks not followed, no filesystem access) and checked to lie
    strictly inside ``base``. A relative ``base`` is taken relative to the current directory.

    Raises:
        InvalidFolder: the name is invalid, or the result would not be strictly inside ``base``.
    """
    validate_folder(folder)
    root = os.path.normpath(os.path.abspath(base))
    target = os.path.normpath(os.path.join(root, folder))
    # Second line of defence: validation already excludes separators and '..', but the containment check
    # keeps this function safe even if the name rules are ever loosened.
    if os.path.dirname(target) != root or os.path.commonpath([root, target]) != root:
        raise InvalidFolder(f"invalid group folder {folder!r}: escapes {root}")
    return Path(target)
