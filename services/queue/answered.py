"""Which piped turns a failed run answered before it ended: the queue's v1 "output reached the user" rule per turn.

The queue counts a piped turn as answered when the run went idle after it (``RunIdled``). A run that dies between
its answer and its idle marker (the runner SIGKILLed right after the reply went out) would otherwise have that
turn retried, and the person gets the answer twice (found by the long fault campaign, docs/reliability.md).
NanoClaw v1 does not retry once output reached the user (``processGroupMessages``: "Agent error after output was
sent, skipping cursor rollback to prevent duplicates", nanoclaw-behaviour §13); this applies that rule to each
turn: a turn the agent took (``AgentInputDelivered``) and then answered with text that reaches the user (the one
rule, events/catalogue/output_text.py) is answered.

One load of the run's own aggregate (``agent/run/<run id>``), made only for runs that did not succeed.
"""

from __future__ import annotations

from events.catalogue.agent import AgentInputDelivered, AgentOutputProduced
from events.catalogue.output_text import user_text
from events.envelope import AggregateRef
from events.store.port import EventStore

_REF = AgentOutputProduced.context, AgentOutputProduced.aggregate


async def answered_turns(store: EventStore, run_id: str) -> set[str]:
    """The turn ids run ``run_id`` took and then answered with user-facing output. Raises ``EventStoreError``
    when the store does not answer (the handler is then redelivered)."""
    answered: set[str] = set()
    taken: list[str] = []
    for commit in await store.load(AggregateRef(*_REF, run_id)):
        for ce in commit.events:
            if ce.eventtype == AgentInputDelivered.__name__:
                taken += ce.data.get("turn_ids") or []
            elif (ce.eventtype == AgentOutputProduced.__name__ and ce.data.get("status") == "success"
                  and user_text(ce.data.get("text")) is not None):
                answered.update(taken)
                taken = []
    return answered
