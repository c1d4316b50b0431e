"""Extra-mount allowlist (NanoClaw v1 §17.2), kept outside the project and never mountable.

File (JSON, default ``~/.config/nanoclaw/mount-allowlist.json``)::

    {"allowedRoots": [{"path": "~/projects", "allowReadWrite": true, "description": "…"}],
     "blockedPatterns": ["password", "secret", "token"],
     "nonMainReadOnly": true}

Loading: a missing file blocks every extra mount and is **not** cached (creating it later takes effect); an
invalid file (bad JSON or schema) blocks them and the error is cached for the life of the loader; a valid file
is cached. User patterns are merged with :data:`DEFAULT_BLOCKED_PATTERNS`.

A group's extra mount (``container_config["additionalMounts"]`` item) is
``{"hostPath": str, "containerPath"?: str, "readonly"?: bool}``; :meth:`MountAllowlistLoader.validate` checks,
in order: allowlist loaded; container path (default the host basename) non-empty, relative, no ``..``, no ``:``
(docker option injection) and no ``,``; host path (``~`` expanded, symlinks resolved) exists; no blocked
pattern in any component (substring match) or the whole path; no overlap with a protected path (the allowlist
file always: a mount that is or contains it is refused); under an allowed root (roots resolved, missing roots
skipped); read-only unless ``readonly: false`` **and** not (non-main and ``nonMainReadOnly``) **and** the root
``allowReadWrite``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

logger = logging.getLogger(__name__)

DEFAULT_BLOCKED_PATTERNS = (".ssh", ".gnupg", ".gpg", ".aws", ".azure", ".gcloud", ".kube", ".docker", "credentials",
                            ".env", ".netrc", ".npmrc", ".pypirc", "id_rsa", "id_ed25519", "private_key", ".secret")


class AllowedRoot(BaseModel):
    model_config = ConfigDict(extra="ignore")
    path: StrictStr = Field(min_length=1)
    allow_read_write: StrictBool = Field(False, alias="allowReadWrite")
    description: str | None = None


class MountAllowlist(BaseModel):
    """The parsed file; ``blocked_patterns`` already includes the defaults after :meth:`MountAllowlistLoader.load`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    allowed_roots: list[AllowedRoot] = Field(alias="allowedRoots")
    blocked_patterns: list[StrictStr] = Field(alias="blockedPatterns")
    non_main_read_only: StrictBool = Field(alias="nonMainReadOnly")


@dataclass(frozen=True)
class MountDecision:
    """Outcome for one requested mount. When ``allowed``: ``host`` is the real host path, ``container`` the
    relative path under ``/workspace/extra/``, ``read_only`` the effective mode. ``reason`` always says why."""

    allowed: bool
    reason: str
    host: str | None = None
    container: str | None = None
    read_only: bool = True


def expand(path: str) -> str:
    """``~`` expanded (from HOME), then made absolute (not resolved)."""
    return os.path.abspath(os.path.expanduser(path))


def _real(path: str) -> str | None:
    try:
        return os.path.realpath(path, strict=True)
    except OSError:
        return None


def _within(child: str, parent: str) -> bool:
    return child == parent or os.path.commonpath([child, parent]) == parent


def blocked_pattern(real_path: str, patterns: Iterable[str]) -> str | None:
    """The first pattern contained in any component of ``real_path`` or in the whole path, else None."""
    parts = real_path.split(os.sep)
    for pattern in patterns:
        if any(pattern in part for part in parts) or pattern in real_path:
            return pattern
    return None


def container_path_problem(container_path: str) -> str | None:
    if not container_path or not container_path.strip():
        return "empty"
    if container_path.startswith("/"):
        return "absolute"
    if ".." in container_path:
        return "contains '..'"
    if "." in container_path.strip("/").split("/"):
        return "names '.'"
    if ":" in container_path or "," in container_path or any(ord(c) < 32 for c in container_path):
        return "contains ':', ',' or a control character"
    return None


class MountAllowlistLoader:
    """Loads the allowlist at ``path`` and validates extra mounts against it (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(expand(str(path)))
        self._cached: MountAllowlist | None = None
        self._error: str | None = None
        self._missing_warned = False

    def load(self) -> MountAllowlist | None:
        """The allowlist, or None (missing or invalid: every extra mount is blocked)."""
        if self._cached is not None or self._error is not None:
            return self._cached
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if not self._missing_warned:  # warn once, but keep looking: creating the file later takes effect
                logger.warning("Mount allowlist not found at %s - additional mounts will be BLOCKED", self.path)
                self._missing_warned = True
            return None
        except OSError as exc:
            raw, self._error = None, f"unreadable: {exc}"
        if raw is not None:
            try:
                parsed = MountAllowlist.model_validate(json.loads(raw))
                merged = list(dict.fromkeys([*DEFAULT_BLOCKED_PATTERNS, *parsed.blocked_patterns]))
                self._cached = parsed.model_copy(update={"blocked_patterns": merged})
                logger.info("Mount allowlist loaded from %s: %d roots, %d blocked patterns", self.path,
                            len(parsed.allowed_roots), len(merged))
                return self._cached
            except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
                self._error = str(exc).splitlines()[0] if isinstance(exc, json.JSONDecodeError) else str(exc)
        logger.error("Failed to load mount allowlist %s - additional mounts will be BLOCKED: %s", self.path,
                     self._error)
        return None

    def validate(self, mount: Any, is_main: bool, protected: Iterable[Path | str] = ()) -> MountDecision:
        """Decide one requested mount. ``protected``: paths no mount may equal, contain or lie inside (the
        allowlist file is always protected)."""
        allowlist = self.load()
        if allowlist is None:
            why = f"invalid mount allowlist {self.path}: {self._error}" if self._error else \
                f"No mount allowlist configured at {self.path}"
            return MountDecision(False, why)
        if not isinstance(mount, dict) or not isinstance(mount.get("hostPath"), str) or not mount["hostPath"]:
            return MountDecision(False, f"malformed mount entry (needs a hostPath string): {mount!r}")
        host_path = mount["hostPath"]
        container = mount.get("containerPath") or os.path.basename(host_path.rstrip("/"))
        problem = container_path_problem(container) if isinstance(container, str) else None
        if not isinstance(container, str) or problem:
            return MountDecision(False, f'Invalid container path: "{container}" ({problem or "not a string"}) - '
                                        f'must be relative, non-empty, without "..", ":" or ","')
        expanded = expand(host_path)
        real = _real(expanded)
        if real is None:
            return MountDecision(False, f'Host path does not exist: "{host_path}" (expanded: "{expanded}")')
        if "," in real or ":" in real:
            return MountDecision(False, f'Host path contains "," or ":" (cannot be mounted safely): "{real}"')
        if (pattern := blocked_pattern(real, allowlist.blocked_patterns)) is not None:
            return MountDecision(False, f'Path matches blocked pattern "{pattern}": "{real}"')
        for p in [self.path, *protected]:
            guarded = os.path.realpath(expand(str(p)))
            if _within(real, guarded) or _within(guarded, real):
                return MountDecision(False, f'Path "{real}" overlaps protected path "{guarded}"')
        root = self._allowed_root(real, allowlist)
        if root is None:
            roots = ", ".join(expand(r.path) for r in allowlist.allowed_roots)
            return MountDecision(False, f'Path "{real}" is not under any allowed root. Allowed roots: {roots}')
        read_only = True
        if mount.get("readonly") is False:
            if not is_main and allowlist.non_main_read_only:
                logger.info("Mount forced to read-only for non-main group: %s", host_path)
            elif not root.allow_read_write:
                logger.info("Mount forced to read-only - root %s does not allow read-write: %s", root.path, host_path)
            else:
                read_only = False
        why = f'Allowed under root "{root.path}"' + (f" ({root.description})" if root.description else "")
        return MountDecision(True, why, host=real, container=container.strip("/"), read_only=read_only)

    def validate_all(self, mounts: Iterable[Any], group: str, is_main: bool,
                     protected: Iterable[Path | str] = ()) -> list[MountDecision]:
        """The allowed decisions, in request order; each rejection is logged ("Additional mount REJECTED")."""
        allowed, protected = [], list(protected)
        for mount in mounts:
            decision = self.validate(mount, is_main, protected)
            if decision.allowed:
                allowed.append(decision)
            else:
                logger.warning("Additional mount REJECTED for group %s: %s", group, decision.reason)
        return allowed

    @staticmethod
    def _allowed_root(real: str, allowlist: MountAllowlist) -> AllowedRoot | None:
        for root in allowlist.allowed_roots:
            real_root = _real(expand(root.path))
            if real_root is not None and _within(real, real_root):  # missing roots are skipped
                return root
        return None
