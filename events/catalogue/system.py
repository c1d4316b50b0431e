"""System events: what the harness itself records."""

from __future__ import annotations

from events.catalogue.base import EventPayload
from events.catalogue.types import UtcTimestamp


class MessageDeadLettered(EventPayload):
    """A service gave up on a message (it failed ``max_deliver`` times, or could not be parsed). The message
    itself is kept on ``nc.dlq.<service>`` at ``dead_letter_seq``. Aggregate id: the service name."""

    context = "system"
    aggregate = "deadletter"

    service: str
    subject: str
    stream_seq: int
    deliveries: int
    error: str
    dead_letter_seq: int | None = None
    at: UtcTimestamp
