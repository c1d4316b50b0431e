"""Which failed message runs are not worth a retry.

A run whose model calls failed on the Claude credential (missing, or rejected by the API: the broker's
``ModelCredentialFailed`` on ``broker.credential/<run id>``, recorded before the sandbox even got its answer, so
before the run's ``AgentRunFinished``) fails the same way on every retry until someone changes the credential.
Retrying it five times (v1's backoff, 2.5 minutes) only delays telling the person; the queue abandons it at once
instead (``RunAbandoned`` with the reason below), and the next message tries again.

One direct get of the run's credential aggregate, made only for failed runs.
"""

from __future__ import annotations

from events.catalogue.broker import ModelCredentialFailed
from events.envelope import AggregateRef
from events.store.port import EventStore

_REF = ModelCredentialFailed.context, ModelCredentialFailed.aggregate


async def not_retryable(store: EventStore, run_id: str) -> str | None:
    """Why run ``run_id`` must not be retried (``"credential rejected (HTTP 401)"``, ``"credential missing"``),
    or None for an ordinary failure. Raises ``EventStoreError`` when the store does not answer (the handler is
    then redelivered)."""
    ref = AggregateRef(*_REF, run_id)
    head = await store.head(ref)
    if head.seq == 0:
        return None
    for commit in await store.load(ref, after_seq=head.seq - 1):
        for ce in commit.events:
            if ce.eventtype == ModelCredentialFailed.__name__:
                status = ce.data.get("status") or 0
                return "credential missing" if ce.data.get("problem") == "missing" else f"credential rejected (HTTP {status})"
    return "credential rejected"
