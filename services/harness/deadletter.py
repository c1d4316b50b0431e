"""Dead-letter one message of ``NC_EVENTS``: keep a copy on ``nc.dlq.<service>`` and record a
``MessageDeadLettered`` event, both keyed by (service, stream sequence) so a retry stores neither twice
within the duplicate window. Used by service consumers (services/harness/runner.py) and by the projections
service for messages of the log that are not valid commits (services/projector/dead_letters.py).

The copy is bounded, because the message it copies may be exactly what is wrong: a body over
:data:`COPY_LIMIT_BYTES` is left out (``Nc-Body-Omitted`` says why, ``Nc-Body-Size`` how big; the original stays
at its sequence in ``NC_EVENTS``), and every header value is made sendable (no control character, no lone
surrogate, bounded length). A copy the server still refuses is stored once more without body or copied headers,
so recording a bad message never fails because of the message.
"""

from __future__ import annotations

import nats.errors
from nats.aio.client import Client
from nats.js.errors import BadRequestError

from events.catalogue.system import MessageDeadLettered
from events.catalogue.types import iso_utc
from events.envelope import utcnow
from events.store.port import EventStore
from events.subjects import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM, EVENT_STREAM
from services.harness.emit import append_emit
from services.harness.service import Emit


COPY_LIMIT_BYTES = 256 * 1024
"""Largest body a dead letter copies (bytes). Far above any valid commit of ours (a chat message is at most
tens of KB); far below the server's ``max_payload`` (1 MB by default, 8 MB in nats.conf), which the copy plus its
headers must fit."""

HEADER_LIMIT = 2000
"""Longest header value a dead letter carries (characters), its error included."""

HDR_BODY_OMITTED = "Nc-Body-Omitted"
HDR_BODY_SIZE = "Nc-Body-Size"


async def dead_letter(nc: Client, store: EventStore, *, service: str, subject: str, seq: int, data: bytes,
                      headers: dict[str, str] | None, deliveries: int, error: str,
                      attempt: int = 1) -> MessageDeadLettered:
    """Copy the message at stream sequence ``seq`` (``subject``, ``data``, ``headers``) to
    ``nc.dlq.<service>`` with the error in ``Nc-*`` headers, then append the ``MessageDeadLettered`` event on
    ``system.deadletter/<service>``. ``error`` is made one printable line of at most :data:`HEADER_LIMIT`
    characters (header values cannot carry newlines). A body over :data:`COPY_LIMIT_BYTES` is not copied.
    ``attempt`` > 1 is a re-driven dead letter that failed again (services/harness/redrive.py): its ids carry the
    attempt, so each attempt is kept once. Returns the recorded event.

    Raises:
        EventStoreError, nats.errors.Error: the copy or the event could not be stored (retry: both are
            idempotent within the duplicate window).
    """
    clean = header_value(error)
    copied = {k: header_value(v) for k, v in (headers or {}).items() if not k.startswith("Nats-") and _token(k)}
    key = f"{service}:{seq}" if attempt == 1 else f"{service}:{seq}:{attempt}"
    ours = {
        "Nats-Msg-Id": f"dlq:{key}",
        "Nc-Error": clean,
        "Nc-Service": service,
        "Nc-Original-Subject": header_value(subject),
        "Nc-Original-Seq": str(seq),
        "Nc-Deliveries": str(deliveries),
    }
    if attempt > 1:
        ours["Nc-Attempt"] = str(attempt)
    body = data
    if len(data) > COPY_LIMIT_BYTES:
        body = b""
        ours[HDR_BODY_OMITTED] = (f"{len(data)} bytes, over the {COPY_LIMIT_BYTES}-byte copy limit; the original is "
                                  f"{EVENT_STREAM} seq {seq}")
        ours[HDR_BODY_SIZE] = str(len(data))
    target = f"{DEAD_LETTER_PREFIX}.{service}"
    js = nc.jetstream()
    try:
        ack = await js.publish(target, body, headers={**copied, **ours}, stream=DEAD_LETTER_STREAM)
    except (nats.errors.MaxPayloadError, BadRequestError) as exc:
        # Refused for its size or content, not for want of a server: the bare record still has to be kept.
        ours[HDR_BODY_OMITTED] = header_value(f"{len(data)} bytes; the copy was refused ({type(exc).__name__}: "
                                              f"{exc}); the original is {EVENT_STREAM} seq {seq}")
        ours[HDR_BODY_SIZE] = str(len(data))
        ack = await js.publish(target, b"", headers=ours, stream=DEAD_LETTER_STREAM)
    notice = MessageDeadLettered(service=service, subject=subject, stream_seq=seq, deliveries=deliveries,
                                 error=clean, dead_letter_seq=ack.seq, at=iso_utc(utcnow()), attempt=attempt)
    await append_emit(store, Emit.append(service, notice), source=service, msg_id=f"dlq-event:{key}")
    return notice


def header_value(text: str) -> str:
    """``text`` as one header value: a lone surrogate (not encodable as UTF-8) written as ``\\udXXX``, every
    other unprintable character (CR, LF, NUL, escape…) as a space, runs of whitespace as one space, at most
    :data:`HEADER_LIMIT` characters. A CR or LF would end the header (or forge the next one)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:HEADER_LIMIT]


def _token(name: str) -> bool:
    """A header name that can be sent again as is (printable ASCII, no colon or space)."""
    return name.isascii() and name.isprintable() and ":" not in name and " " not in name and bool(name)
