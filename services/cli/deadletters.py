"""What ``nanoclaw dlq`` and ``nanoclaw status`` read and append: the dead-letter ledger of the log
(services/harness/dlq_ledger.py), the kept copies in ``NC_DLQ``, and the operator's ``DeadLetterRetried`` /
``DeadLetterDropped`` events (appended as the CLI's admin identity, which may write any subject)."""

from __future__ import annotations

import getpass
import json
import unicodedata

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from events.catalogue.system import DeadLetterDropped, DeadLetterRetried
from events.catalogue.types import iso_utc
from events.envelope import utcnow
from events.store.port import EventStore
from events.subjects import DEAD_LETTER_STREAM
from services.harness.dlq_ledger import OPEN_STATES, DeadLetter, Ledger, read_ledger
from services.harness.emit import append_emit
from services.harness.service import Emit


async def open_dead_letters(_nc: Client, store: EventStore) -> list[DeadLetter]:
    """Dead letters still ``open`` or ``retrying``, oldest first."""
    ledger = await read_ledger(store)
    return [d for d in ledger.letters.values() if d.state in OPEN_STATES]


async def kept_copy(nc: Client, letter: DeadLetter) -> tuple[bytes, dict[str, str]] | None:
    """The message as kept in ``NC_DLQ`` (body, headers), or None when the ledger names no copy or it is gone."""
    if letter.dead_letter_seq is None:
        return None
    try:
        msg = await nc.jetstream().get_msg(DEAD_LETTER_STREAM, letter.dead_letter_seq, direct=True)
    except NotFoundError:
        return None
    return msg.data or b"", dict(msg.headers or {})


async def request_retry(store: EventStore, letter: DeadLetter) -> None:
    payload = DeadLetterRetried(service=letter.service, stream_seq=letter.stream_seq, attempt=letter.attempt,
                                subject=letter.subject, requested_by=getpass.getuser(), at=iso_utc(utcnow()))
    await append_emit(store, Emit.append(letter.service, payload), source="cli", msg_id=f"dlq-retry:{letter.id}")


async def drop(store: EventStore, letter: DeadLetter, reason: str | None) -> None:
    payload = DeadLetterDropped(service=letter.service, stream_seq=letter.stream_seq, attempt=letter.attempt,
                                reason=reason, requested_by=getpass.getuser(), at=iso_utc(utcnow()))
    await append_emit(store, Emit.append(letter.service, payload), source="cli", msg_id=f"dlq-drop:{letter.id}")


async def outcome(store: EventStore, letter: DeadLetter, ledger: Ledger) -> DeadLetter | None:
    """After a retry request: the retried letter once it has an outcome (``retried`` or ``failed_again``), else
    None. ``ledger`` is folded further on each call."""
    await read_ledger(store, letter.service, ledger)
    current = ledger.letters.get((letter.service, letter.stream_seq, letter.attempt))
    return current if current is not None and current.state in ("retried", "failed_again") else None


def safe_text(body: bytes, limit: int) -> tuple[str, bool]:
    """A body as text that cannot drive the terminal: pretty JSON when it is JSON, invalid UTF-8 as ``\\xNN``,
    control and format characters (escape sequences, bidirectional overrides) as ``\\uNNNN``; at most ``limit``
    bytes of the body. Returns ``(text, truncated)``."""
    truncated = len(body) > limit
    text = body[:limit].decode("utf-8", errors="backslashreplace")
    if not truncated:
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs") else f"\\u{ord(ch):04x}"
                   for ch in text), truncated
