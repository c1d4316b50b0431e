"""Where a service may answer a request, and who asked: the harness's guard against a confused deputy.

A request's reply subject is chosen by whoever sends it, and a service answers with its own rights. Answering on
whatever it is given let one sandbox make the scheduler publish into the event stream and call the JetStream API
(issue 20; docs/agent-runs.md, "Reply subjects"). So every request handler answers only on:

- ``_R_.<…>``: a response route the server made itself for a request that crossed accounts. Sandboxes live in the
  ``SANDBOX`` account and reach the services only through service imports, so the server rewrites their reply
  subject and delivers the answer back into the sandbox account, never into the services' account;
- ``_INBOX.<…>`` or ``_INBOX_<name>.<…>``: an inbox of a client in the services' own account (the CLI, a service,
  a test), the only other clients that can publish there.

Anything else — an event subject, ``$JS.API.…``, ``$SYS.…``, a dead-letter or request subject, a wildcard — is
refused before the handler runs, with a ``SandboxRequestRefused`` event.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping

SERVER_ROUTE_PREFIX = "_R_."
_SAFE_REPLY = re.compile(r"(_R_|_INBOX|_INBOX_[A-Za-z0-9_-]+)(\.[A-Za-z0-9_-]+)+")
REQUEST_INFO = "Nats-Request-Info"
RUN_USER_PREFIX = "run-"


def reply_problem(reply: str) -> str | None:
    """None when answering on ``reply`` is safe (see the module docstring), else why it is not.

    ``reply`` is the request's reply subject; an empty one (a publish without a reply) is safe: nothing is sent.
    """
    if not reply or _SAFE_REPLY.fullmatch(reply):
        return None
    shown = reply if len(reply) <= 200 else reply[:200] + "…"
    return f"reply subject {shown!r} is not an inbox (_INBOX.…) or a server response route (_R_.…)"


@dataclass(frozen=True)
class Requester:
    """Who sent a request, as far as the server attests it. ``account``/``user`` come from the ``Nats-Request-Info``
    header the server adds to requests that cross a service import with ``share: true`` (and overwrites if a
    client sets it); None for a client of the services' own account. ``run_id``: the sandbox run, from its NATS
    user ``run-<run id>`` (services/harness/natsauth.py)."""

    account: str | None = None
    user: str | None = None

    @property
    def run_id(self) -> str | None:
        if self.user and self.user.startswith(RUN_USER_PREFIX):
            return self.user[len(RUN_USER_PREFIX):]
        return None

    @classmethod
    def of(cls, headers: Mapping[str, str] | None) -> "Requester":
        """Read the server's ``Nats-Request-Info`` JSON (``{"acc": …, "user": …, …}``); an absent or unreadable
        header gives an anonymous requester (never an error: the header is the server's, not the client's)."""
        raw = (headers or {}).get(REQUEST_INFO)
        try:
            info = json.loads(raw) if raw else {}
        except ValueError:
            info = {}
        if not isinstance(info, dict):
            info = {}
        acc, user = info.get("acc"), info.get("user")
        return cls(acc if isinstance(acc, str) else None, user if isinstance(user, str) else None)
