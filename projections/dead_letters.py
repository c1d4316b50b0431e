"""Which messages of the log a ``MessageDeadLettered`` event accounts for, read from the log itself.

The projections service asks before recording a skipped message (so a restart or a rebuilt database does not
record it twice); ``audit verify`` asks whether every skipped message was recorded.
"""

from __future__ import annotations

from pydantic import ValidationError

from events.catalogue.system import MessageDeadLettered
from events.errors import InvalidEvent
from events.store.port import EventStore
from events.subjects import aggregate_subject, event_filter
from projections.base import records


async def dead_lettered(store: EventStore, *, service: str | None = None) -> dict[int, set[str]]:
    """Stream sequence of each message named by a ``MessageDeadLettered`` event (of ``service``'s ledger, or of
    every service's) → the services that recorded it. A message on a dead-letter subject that is not a valid
    ``MessageDeadLettered`` accounts for nothing (it is itself skipped by every follower).

    Raises:
        EventStoreError: the log cannot be read.
    """
    context, aggregate = MessageDeadLettered.context, MessageDeadLettered.aggregate
    subjects = aggregate_subject(context, aggregate, service) if service else event_filter(context, aggregate)
    out: dict[int, set[str]] = {}
    async for raw in store.read_raw(subject_filter=subjects):
        try:
            notices = [r.payload() for r in records(raw.seq, raw.subject, raw.stored_at, raw.data)
                       if r.type == MessageDeadLettered.__name__]
        except (InvalidEvent, ValidationError):
            continue
        for notice in notices:
            out.setdefault(notice.stream_seq, set()).add(notice.service)
    return out
