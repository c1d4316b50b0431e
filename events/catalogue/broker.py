"""External-access broker events. So far: the model proxy's usage and refusals (issue: agent runs).
Aggregate id: the group folder (one usage ledger per group)."""

from __future__ import annotations

from typing import Literal

from events.catalogue.base import EventPayload


class ModelUsageRecorded(EventPayload):
    """One call the model proxy forwarded for a run: tokens as reported by the API's ``usage`` and the cost in
    USD from the proxy's price table. ``endpoint`` says which: ``messages`` (``POST /v1/messages``, billed) or
    ``count_tokens`` (``POST /v1/messages/count_tokens``, free upstream, so recorded with zero tokens and cost;
    the count it returns is an estimate, not usage). Events from before the field existed were all Messages
    calls, hence the default."""

    context = "broker"
    aggregate = "usage"

    run_id: str
    group_folder: str
    model: str
    status: int
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    endpoint: Literal["messages", "count_tokens"] = "messages"


class ModelRequestRefused(EventPayload):
    """The proxy refused a call: the group's budget is spent (``reason`` names it and the amounts)."""

    context = "broker"
    aggregate = "usage"

    run_id: str
    group_folder: str
    reason: str
    spent_usd: float
    budget_usd: float


class ModelCredentialFailed(EventPayload):
    """The model proxy could not authenticate a run's call to the model API. ``problem``: ``missing`` (no Claude
    credential is configured; nothing went upstream, ``status`` 0) or ``rejected`` (the API answered ``status``
    401 or 403 to the configured credential). The sandbox gets 403 ``permission_error`` with ``x-should-retry:
    false`` instead, because the Claude CLI retries 401 ten times over about three minutes (measured with CLI
    2.1.332 against tests/stub_anthropic.py) and nothing but a new credential helps. The queue does not retry such
    a run and the router tells the chat once (services/router/notices.py). Recorded once per run. Aggregate id:
    the run id (``broker.credential/<run id>``), so "did this run fail on the credential?" is one direct get."""

    context = "broker"
    aggregate = "credential"

    run_id: str
    group_folder: str
    problem: Literal["missing", "rejected"]
    status: int = 0
