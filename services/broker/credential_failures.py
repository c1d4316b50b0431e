"""What the model proxy does when the Claude credential is missing or the model API rejects it.

Why its own answer: the Claude CLI retries a 401 ten times over about three minutes and a 503 likewise (measured
with CLI 2.1.332 against tests/stub_anthropic.py), and nothing but a new credential helps. So the sandbox gets 403
``permission_error`` with ``x-should-retry: false`` (the CLI does not retry 403: one request, measured) and a message
naming the problem, the run fails at once, and the failure is recorded once per run as ``ModelCredentialFailed``
(aggregate ``broker.credential/<run id>``): the queue then does not retry the run, and the router tells the chat.
The message and the event never contain the credential or the upstream's answer body.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Awaitable, Callable

from aiohttp import web

from events.catalogue.broker import ModelCredentialFailed
from services.harness.run_token import RunClaims
from services.harness.service import Emit

REJECTED_STATUSES = frozenset({401, 403})
"""Upstream answers that mean "this credential is not accepted": Anthropic's ``authentication_error`` (401) and
``permission_error`` (403), https://docs.anthropic.com/en/api/errors."""


def rejected_message(status: int) -> str:
    return (f"the model API rejected the Claude credential (HTTP {status}): credential rejected. Renew "
            "anthropic_api_key (or claude_code_oauth_token) in credentials.yml and restart the broker")


class CredentialFailures:
    """Records ``ModelCredentialFailed`` at most once per run and builds the sandbox's answer.

    Args:
        append: appends an emit with a message id (the proxy's logging ``_append``).
        max_runs: runs remembered as recorded (oldest forgotten first); a run makes one failing call and stops.
    """

    def __init__(self, append: Callable[[Emit, str], Awaitable[None]], max_runs: int = 4096):
        self._append, self._max_runs = append, max_runs
        self._recorded: OrderedDict[str, None] = OrderedDict()

    async def answer(self, claims: RunClaims, problem: str, status: int, message: str) -> web.Response:
        """Record the failure (first time for this run) and return the 403 for the sandbox."""
        if claims.run_id not in self._recorded:
            self._recorded[claims.run_id] = None
            while len(self._recorded) > self._max_runs:
                self._recorded.popitem(last=False)
            event = ModelCredentialFailed(run_id=claims.run_id, group_folder=claims.group_folder,
                                          problem=problem, status=status)  # type: ignore[arg-type]
            await self._append(Emit.append(claims.run_id, event), f"credential:{claims.run_id}")
        response = web.json_response({"type": "error", "error": {"type": "permission_error", "message": message}},
                                     status=403)
        response.headers["x-should-retry"] = "false"
        return response
