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
