"""Dead-letter one message of ``NC_EVENTS``: keep a copy on ``nc.dlq.<service>`` and record a
``MessageDeadLettered`` event, both keyed by (service, stream sequence) so a retry stores neither twice
within the duplicate window. Used by service consumers (services/harness/runner.py) and by the projections
service for messages of the log that are not valid commits (services/projector/dead_letters.py)."""

from __future__ import annotations

from nats.aio.client import Client

from events.catalogue.system import MessageDeadLettered
from events.catalogue.types import iso_utc
from events.envelope import utcnow
from events.store.port import EventStore
from events.subjects import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM
from services.harness.emit import append_emit
from services.harness.service import Emit


async def dead_letter(nc: Client, store: EventStore, *, service: str, subject: str, seq: int, data: bytes,
                      headers: dict[str, str] | None, deliveries: int, error: str) -> MessageDeadLettered:
    """Copy the message at stream sequence ``seq`` (``subject``, ``data``, ``headers``) to
    ``nc.dlq.<service>`` with the error in ``Nc-*`` headers, then append the ``MessageDeadLettered`` event on
    ``system.deadletter/<service>``. ``error`` is flattened to one line of at most 2,000 characters (header
    values cannot carry newlines). Returns the recorded event.

    Raises:
        EventStoreError, nats.errors.Error: the copy or the event could not be stored (retry: both are
            idempotent within the duplicate window).
    """
    clean = " ".join(error.split())[:2000]
    copied = {k: v for k, v in (headers or {}).items() if not k.startswith("Nats-")}
    copied.update({
        "Nats-Msg-Id": f"dlq:{service}:{seq}",
        "Nc-Error": clean,
        "Nc-Service": service,
        "Nc-Original-Subject": subject,
        "Nc-Original-Seq": str(seq),
        "Nc-Deliveries": str(deliveries),
    })
    ack = await nc.jetstream().publish(f"{DEAD_LETTER_PREFIX}.{service}", data, headers=copied,
                                       stream=DEAD_LETTER_STREAM)
    notice = MessageDeadLettered(service=service, subject=subject, stream_seq=seq, deliveries=deliveries,
                                 error=clean, dead_letter_seq=ack.seq, at=iso_utc(utcnow()))
    await append_emit(store, Emit.append(service, notice), source=service, msg_id=f"dlq-event:{service}:{seq}")
    return notice
