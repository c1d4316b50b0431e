"""NATS identities for sandboxed agent runs, enforced by the server.

Each run gets its own user, allowed to publish only its group's IPC requests (``nc.ipc.<folder>.>``), to
receive only its own input (``nc.run.<folder>.<run_id>.>``) and the replies to its requests (its private
inbox prefix), and to answer the runner's input requests (``allow_responses``). So a compromised agent can
neither read nor act as another group: the subject it publishes on *is* its identity (stack-notes §8;
compare NanoClaw v1, where the IPC directory name was the identity, quirk 11).

:class:`EmbeddedAuth` manages the embedded server's ``authorization`` block: the services user plus one user
per live run, written to an included file and applied by a configuration reload (SIGHUP). Deployments with
an external server (issue: containers) provide another :class:`RunIdentityIssuer`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

IPC_PREFIX = "nc.ipc"
RUN_PREFIX = "nc.run"


@dataclass(frozen=True)
class RunIdentity:
    """What a sandbox needs to reach NATS as one run (passed on its stdin, never in its environment)."""

    user: str
    password: str
    inbox_prefix: str
    input_subject: str
    ipc_prefix: str

    def as_input(self, url: str) -> dict[str, str]:
        return {"url": url, "user": self.user, "password": self.password, "inbox_prefix": self.inbox_prefix,
                "input_subject": self.input_subject, "ipc_prefix": self.ipc_prefix}


def run_identity(run_id: str, group_folder: str, password: str) -> RunIdentity:
    """The subjects of one run. ``group_folder`` matches ``[A-Za-z0-9][A-Za-z0-9_-]*`` (no dots or wildcards),
    so it is exactly one subject token."""
    token = run_id.replace(".", "-")
    return RunIdentity(user=f"run-{token}", password=password, inbox_prefix=f"_INBOX_{token}",
                       input_subject=f"{RUN_PREFIX}.{group_folder}.{token}.input",
                       ipc_prefix=f"{IPC_PREFIX}.{group_folder}")


def permissions(identity: RunIdentity) -> dict:
    return {"publish": {"allow": [f"{identity.ipc_prefix}.>"]},
            "subscribe": {"allow": [identity.input_subject, f"{identity.inbox_prefix}.>"]},
            "allow_responses": True}


class RunIdentityIssuer(Protocol):
    async def issue(self, run_id: str, group_folder: str) -> RunIdentity: ...

    async def revoke(self, run_id: str) -> None: ...


class EmbeddedAuth:
    """The embedded server's users: ``services`` (full access, for our own services and the CLI) and one
    restricted user per live run.

    Args:
        path: the included file (``auth.conf`` beside the generated server configuration); mode 0600.
        services_password: the services user's password.
        reload: applies a rewritten file (the embedded server's SIGHUP); set once the server exists.
    """

    SERVICES_USER = "services"

    def __init__(self, path: Path, services_password: str | None = None, reload: Callable[[], None] | None = None):
        self.path = Path(path)
        self.services_password = services_password or secrets.token_urlsafe(24)
        self.reload = reload
        self._runs: dict[str, RunIdentity] = {}
        self._lock = asyncio.Lock()

    def conf_text(self) -> str:
        # JSON strings are valid NATS configuration strings, and quoting every value keeps a password or
        # subject from being read as a number or a variable.
        users = [{"user": self.SERVICES_USER, "password": self.services_password}]
        users += [{"user": i.user, "password": i.password, "permissions": permissions(i)} for i in self._runs.values()]
        body = "\n".join(f"    {json.dumps(u)}" for u in users)
        return f"authorization {{\n  users: [\n{body}\n  ]\n}}\n"

    def write(self) -> None:
        """Write the file atomically (a reload never reads half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.conf_text())
        os.replace(tmp, self.path)

    async def issue(self, run_id: str, group_folder: str) -> RunIdentity:
        async with self._lock:
            identity = run_identity(run_id, group_folder, secrets.token_urlsafe(24))
            self._runs[run_id] = identity
            self._apply()
            return identity

    async def revoke(self, run_id: str) -> None:
        async with self._lock:
            if self._runs.pop(run_id, None) is not None:
                self._apply()

    def _apply(self) -> None:
        self.write()
        if self.reload is not None:
            self.reload()
