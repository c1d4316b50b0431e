"""The dead-letter ledger: each service's ``system.deadletter/<service>`` aggregate folded into one
:class:`DeadLetter` per attempt. Read by ``nanoclaw dlq`` (services/cli/cmd_dlq.py) and by each service's
harness to find the retries it still owes (services/harness/redrive.py).

Lifecycle of dead letter ``<service>:<stream_seq>:<attempt>`` (events/catalogue/system.py):
``MessageDeadLettered`` → ``open``; ``DeadLetterRetried`` → ``retrying``; then ``DeadLetterRetrySucceeded`` →
``retried``, or ``MessageDeadLettered`` with ``attempt + 1`` → ``failed_again`` (and the new attempt is
``open``); ``DeadLetterDropped`` → ``dropped``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from events.envelope import CloudEvent, decode_events
from events.errors import InvalidEvent
from events.store.port import EventStore
from events.subjects import aggregate_subject, event_filter

OPEN_STATES = ("open", "retrying")
"""States ``nanoclaw dlq list`` shows without ``--all``: the ones that still need the operator or a service."""
_ID = re.compile(r"^(?P<service>[a-z][a-z0-9_-]*):(?P<seq>[0-9]+)(?::(?P<attempt>[0-9]+))?$")


class BadDeadLetterId(ValueError):
    """Not ``<service>:<stream seq>[:<attempt>]``."""


def parse_id(text: str) -> tuple[str, int, int | None]:
    """``"router:42:2"`` → ``("router", 42, 2)``; without the attempt, ``None`` (the newest).

    Raises:
        BadDeadLetterId: naming the expected shape.
    """
    m = _ID.match(text.strip())
    if not m:
        raise BadDeadLetterId(f"dead letter id {text!r}: expected <service>:<stream seq>[:<attempt>], e.g. router:42:1")
    return m["service"], int(m["seq"]), int(m["attempt"]) if m["attempt"] else None


@dataclass
class DeadLetter:
    """One attempt of one dead-lettered message. ``history``: ``(event type, time, by)`` in log order."""

    service: str
    stream_seq: int
    attempt: int
    subject: str
    error: str
    deliveries: int
    dead_letter_seq: int | None
    at: str
    state: str = "open"
    history: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.service}:{self.stream_seq}:{self.attempt}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "service": self.service, "stream_seq": self.stream_seq, "attempt": self.attempt,
                "subject": self.subject, "event_type": event_type_of(self.subject), "error": self.error,
                "deliveries": self.deliveries, "dead_letter_seq": self.dead_letter_seq, "at": self.at,
                "state": self.state, "history": [list(h) for h in self.history]}


def event_type_of(subject: str) -> str:
    """The (first) event type a commit's subject names: ``nc.evt.<ctx>.<agg>.<id>.<Type>``."""
    return subject.rsplit(".", 1)[-1] if subject.count(".") >= 5 else "?"


@dataclass
class Ledger:
    """Dead letters by ``(service, stream_seq, attempt)``, in the order they were recorded; ``pending``: the
    ``DeadLetterRetried`` requests without an outcome yet, by key."""

    letters: dict[tuple[str, int, int], DeadLetter] = field(default_factory=dict)
    pending: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    position: int = 0
    """The last stream sequence folded in."""

    def apply(self, seq: int, events: Iterable[CloudEvent]) -> None:
        self.position = max(self.position, seq)
        for ev in events:
            d = ev.data
            try:
                key = (d["service"], int(d["stream_seq"]), int(d.get("attempt", 1)))
            except (KeyError, TypeError, ValueError):
                continue  # not a ledger event (a bad one is skipped by every reader: docs/events.md)
            at = str(d.get("at", ev.time))
            letter = self.letters.get(key)
            if ev.eventtype == "MessageDeadLettered":
                if letter is not None:
                    continue  # recorded twice (outside the duplicate window): the first one counts
                self.letters[key] = DeadLetter(key[0], key[1], key[2], d.get("subject", ""), d.get("error", ""),
                                               int(d.get("deliveries", 0)), d.get("dead_letter_seq"), at,
                                               history=[("MessageDeadLettered", at, None)])
                previous = self.letters.get((key[0], key[1], key[2] - 1))
                if previous is not None and previous.state in OPEN_STATES:
                    previous.state = "failed_again"
                    self.pending.pop(previous_key(key), None)
            elif letter is None:
                continue
            elif ev.eventtype == "DeadLetterRetried":
                letter.history.append(("DeadLetterRetried", at, d.get("requested_by")))
                if letter.state == "open":
                    letter.state = "retrying"
                    self.pending[key] = d
            elif ev.eventtype == "DeadLetterRetrySucceeded":
                letter.history.append(("DeadLetterRetrySucceeded", at, None))
                letter.state = "retried"
                self.pending.pop(key, None)
            elif ev.eventtype == "DeadLetterDropped":
                letter.history.append(("DeadLetterDropped", at, d.get("requested_by")))
                if letter.state in OPEN_STATES:
                    letter.state = "dropped"
                    self.pending.pop(key, None)

    def find(self, service: str, seq: int, attempt: int | None) -> DeadLetter | None:
        """The dead letter (the newest attempt when ``attempt`` is None)."""
        if attempt is not None:
            return self.letters.get((service, seq, attempt))
        attempts = [k for k in self.letters if k[0] == service and k[1] == seq]
        return self.letters[max(attempts)] if attempts else None


def previous_key(key: tuple[str, int, int]) -> tuple[str, int, int]:
    return key[0], key[1], key[2] - 1


def ledger_filter(service: str | None = None) -> str:
    """The subjects of one service's ledger, or of every service's."""
    if service is None:
        return event_filter("system", "deadletter")
    return aggregate_subject("system", "deadletter", service)


async def read_ledger(store: EventStore, service: str | None = None, ledger: Ledger | None = None) -> Ledger:
    """Fold the log's dead-letter ledger (of ``service``, or of all) up to its end into ``ledger`` (or a new one).

    Raises:
        EventStoreError, nats.errors.Error: the log cannot be read.
    """
    ledger = ledger or Ledger()
    async for raw in store.read_raw(after_seq=ledger.position, subject_filter=ledger_filter(service)):
        try:
            ledger.apply(raw.seq, decode_events(raw.data))
        except InvalidEvent:
            ledger.position = max(ledger.position, raw.seq)
    return ledger
