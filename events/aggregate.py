"""Aggregates on the ``eventsourcing`` domain layer, with string ids (JIDs, folder names, run ids).

Only the library's domain layer is used (``BaseAggregate``, ``@event``): its Application and recorders are
synchronous and our services are asyncio (stack-notes §10). An aggregate's ``@event("Name")`` methods are
named after catalogue payloads and take exactly the payload's fields, so each library event maps 1:1 onto a
pydantic payload and back.

Example::

    class RegisteredGroup(NcAggregate):
        CONTEXT, TYPE = "router", "group"

        @event("GroupRegistered")
        def __init__(self, jid: str, name: str, ...): ...
"""

from __future__ import annotations

import logging
from dataclasses import fields
from datetime import datetime
from typing import Any, ClassVar, Iterable, TypeVar

from eventsourcing.domain import BaseAggregate, CanInitAggregate, CanMutateAggregate, MetaDomainEvent
from eventsourcing.utils import get_topic

from events.catalogue.base import EventPayload, payload_class
from events.envelope import AggregateRef, RecordedCommit
from events.errors import InvalidEvent, UnknownEventType

log = logging.getLogger("nanoclaw.events")

_BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}

A = TypeVar("A", bound="NcAggregate")


class NcAggregate(BaseAggregate[str]):
    """Base aggregate with a string id. Subclasses set ``CONTEXT`` and ``TYPE`` and an ``create_id``.

    ``last_seq`` is the stream sequence of the aggregate's last stored commit (0 when new): the token for
    optimistic concurrency on the next save.
    """

    CONTEXT: ClassVar[str]
    TYPE: ClassVar[str]
    last_seq: int = 0

    class Event(CanMutateAggregate[str], metaclass=MetaDomainEvent):
        originator_id: str
        originator_version: int
        timestamp: datetime

    class Created(Event, CanInitAggregate[str]):
        originator_topic: str

    @classmethod
    def ref(cls, aggregate_id: str) -> AggregateRef:
        return AggregateRef(cls.CONTEXT, cls.TYPE, aggregate_id)


def pending_payloads(aggregate: NcAggregate) -> list[EventPayload]:
    """Collect the aggregate's new events as catalogue payloads (empties its pending list).

    Raises:
        InvalidEvent: an event's attributes do not validate against its payload model.
    """
    out = []
    for ev in aggregate.collect_events():
        name = type(ev).__name__
        data = {f.name: getattr(ev, f.name) for f in fields(ev) if f.name not in _BASE_FIELDS}
        try:
            out.append(payload_class(name).model_validate(data))
        except ValueError as exc:
            raise InvalidEvent(f"{type(aggregate).__name__}.{name}: {exc}") from exc
    return out


def replay(cls: type[A], commits: Iterable[RecordedCommit], aggregate: A | None = None) -> A | None:
    """Rebuild (or advance) an aggregate from recorded commits. Returns None when there were none.

    A commit on the aggregate's subject that cannot be one of its saves (no events: not a valid commit; an event
    type not of ``cls``; a payload that does not validate) is skipped whole with a log line, its position kept:
    the log is immutable, and refusing it would refuse every later command on the aggregate (docs/events.md).

    Raises:
        eventsourcing.domain.OriginatorVersionError: commits are out of order or missing.
    """
    topic = get_topic(cls)
    for commit in commits:
        try:
            events = [_domain_event(cls, topic, ce) for ce in commit.events]
        except (InvalidEvent, UnknownEventType) as exc:
            log.warning("commit seq %s on %s is no save of %s; skipped: %s", commit.seq, commit.subject,
                        cls.__name__, exc)
            events = []
        for ev in events:  # built first: a commit is applied whole or not at all
            aggregate = ev.mutate(aggregate)
        if aggregate is not None:
            aggregate.last_seq = commit.seq
    return aggregate


def _domain_event(cls: type[NcAggregate], topic: str, ce: Any) -> Any:
    """The library event of ``cls`` for one stored event.

    Raises:
        InvalidEvent, UnknownEventType: not an event of ``cls``, or its payload does not validate.
    """
    kwargs = ce.payload().model_dump()
    event_cls: Any = getattr(cls, ce.eventtype, None)
    if not isinstance(event_cls, MetaDomainEvent):
        raise InvalidEvent(f"{ce.eventtype} is not an event of aggregate {cls.__name__}")
    if issubclass(event_cls, CanInitAggregate):
        kwargs["originator_topic"] = topic
    return event_cls(originator_id=ce.aggregateid, originator_version=ce.aggregateversion, timestamp=ce.time, **kwargs)
