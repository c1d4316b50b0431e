"""NATS identities for sandboxed agent runs, enforced by the server.

Each run gets its own user, allowed to publish only its group's IPC requests (``nc.ipc.<folder>.>``), to
receive only its own input (``nc.run.<folder>.<run_id>.>``) and the replies to its requests (its private
inbox prefix), and to answer the runner's input requests (``allow_responses``). So a compromised agent can
neither read nor act as another group: the subject it publishes on *is* its identity (stack-notes §8;
compare NanoClaw v1, where the IPC directory name was the identity, quirk 11).

Run users are minted by the server's auth callout, answered in-process (services/harness/natscallout.py), for
the embedded server (services/harness/natsembedded.py) and an external one alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
    """Issues and revokes per-run users: services/harness/natscallout.py (an external server's auth callout) and
    services/harness/natsembedded.py (the embedded server, through the same callout)."""

    async def issue(self, run_id: str, group_folder: str) -> RunIdentity: ...

    async def revoke(self, run_id: str) -> None: ...

    async def close(self) -> None:
        """Stop issuing (the host is stopping); a later :meth:`issue` starts again."""
