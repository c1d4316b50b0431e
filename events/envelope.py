"""The CloudEvents 1.0 envelope and the commit (one JetStream message per aggregate save).

Wire format of one stream message (documented in docs/events.md):

- subject ``nc.evt.<context>.<aggregate>.<id-token>.<type of the first event>``;
- headers ``Content-Type: application/cloudevents-batch+json``, ``Nats-Msg-Id`` (the idempotency key),
  ``Nc-Aggregate-Version`` (the aggregate version after this commit) and ``Nc-Event-Types`` (comma-separated);
- body: a JSON array of structured-mode CloudEvents (the CloudEvents JSON *batch* format), one per event
  of the save, in order. An outside tool needs no code of ours to read it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.catalogue.base import EventPayload, payload_class
from events.errors import InvalidEvent
from events.shape import check_commit
from events.subjects import aggregate_subject

CONTENT_TYPE = "application/cloudevents-batch+json"
HDR_VERSION = "Nc-Aggregate-Version"
HDR_TYPES = "Nc-Event-Types"
_ID_NAMESPACE = uuid.UUID("6f1c1e2a-7f55-4c0b-9a59-4e1f0c0a8b11")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CloudEvent(BaseModel):
    """One event: CloudEvents 1.0 required/optional attributes plus NanoClaw extensions.

    ``subject`` is the aggregate id (raw, not subject-encoded). ``aggregateversion`` is the version of the
    aggregate after this event (1 for the first event).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: str = "application/json"
    aggregatecontext: str
    aggregatetype: str
    aggregateid: str
    aggregateversion: int = Field(ge=1)
    eventtype: str
    schemaversion: int = Field(ge=1)
    causationid: str | None = None
    correlationid: str | None = None
    data: dict[str, Any]

    def payload(self) -> EventPayload:
        """Parse ``data`` into its catalogue model (upcasting older schema versions).

        Raises:
            UnknownEventType: the event type is not in the catalogue.
            InvalidEvent: the data does not validate.
        """
        cls = payload_class(self.eventtype)
        try:
            return cls.model_validate(cls.upcast(dict(self.data), self.schemaversion))
        except ValidationError as exc:
            raise InvalidEvent(f"{self.eventtype} {self.id}: {exc}") from exc


@dataclass(frozen=True)
class AggregateRef:
    """Identifies one aggregate: ``context`` / ``type`` / ``id``."""

    context: str
    type: str
    id: str

    def __str__(self) -> str:
        return f"{self.context}.{self.type}/{self.id}"

    def subject(self, event_type: str = "*") -> str:
        return aggregate_subject(self.context, self.type, self.id, event_type)

    @classmethod
    def for_payload(cls, payload: type[EventPayload] | EventPayload, aggregate_id: str) -> "AggregateRef":
        return cls(payload.context, payload.aggregate, aggregate_id)


@dataclass(frozen=True)
class Commit:
    """All events of one aggregate save; stored as one JetStream message.

    ``version`` is the aggregate version after the commit; ``msg_id`` is the idempotency key
    (``Nats-Msg-Id``).
    """

    aggregate: AggregateRef
    events: tuple[CloudEvent, ...]
    msg_id: str

    @property
    def version(self) -> int:
        return self.events[-1].aggregateversion

    @property
    def subject(self) -> str:
        return self.aggregate.subject(self.events[0].eventtype)

    def encode(self) -> tuple[str, dict[str, str], bytes]:
        """Return ``(subject, headers, body)`` for publishing."""
        body = json.dumps([e.model_dump(mode="json", exclude_none=True) for e in self.events], separators=(",", ":"))
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Nats-Msg-Id": self.msg_id,
            HDR_VERSION: str(self.version),
            HDR_TYPES: ",".join(e.eventtype for e in self.events),
        }
        return self.subject, headers, body.encode()


def new_commit(
    aggregate: AggregateRef,
    payloads: list[EventPayload],
    *,
    version: int,
    source: str,
    msg_id: str | None = None,
    causation: "CloudEvent | None" = None,
    correlation_id: str | None = None,
    time: datetime | None = None,
) -> Commit:
    """Build a commit of ``payloads`` for ``aggregate`` whose current version is ``version`` (0 if new).

    With ``msg_id`` given, event ids are derived from it (uuid5) so a retried command produces identical
    bytes; otherwise random. ``causation`` sets causation id and inherits its correlation id.

    Raises:
        ValueError: no payloads, or a payload belongs to another aggregate type.
    """
    if not payloads:
        raise ValueError(f"a commit to {aggregate} needs at least one event")
    msg_id = msg_id or str(uuid.uuid4())
    when = time or utcnow()
    corr = correlation_id or (causation.correlationid or causation.id if causation else None)
    events = []
    for i, p in enumerate(payloads):
        if (p.context, p.aggregate) != (aggregate.context, aggregate.type):
            raise ValueError(f"{type(p).__name__} belongs to {p.context}.{p.aggregate}, not to {aggregate}")
        event_id = str(uuid.uuid5(_ID_NAMESPACE, f"{msg_id}#{i}"))
        events.append(
            CloudEvent(
                id=event_id,
                source=f"nanoclaw-bus/{source}",
                type=p.cloudevents_type(),
                subject=aggregate.id,
                time=when,
                aggregatecontext=aggregate.context,
                aggregatetype=aggregate.type,
                aggregateid=aggregate.id,
                aggregateversion=version + i + 1,
                eventtype=p.event_type(),
                schemaversion=p.schema_version,
                causationid=causation.id if causation else None,
                correlationid=corr or event_id,
                data=p.model_dump(mode="json"),
            )
        )
    return Commit(aggregate, tuple(events), msg_id)


def decode_events(body: bytes) -> tuple[CloudEvent, ...]:
    """Parse a commit body: a CloudEvents JSON batch (a non-empty array), as :meth:`Commit.encode` writes it. A
    single JSON object is not a commit, even a well-formed event: the contract (docs/events.md) is the batch.
    Event types need not be in the catalogue (``CloudEvent.payload`` checks that), so tools can show any event.

    Raises:
        InvalidEvent: the body fails :func:`events.shape.check_commit` or an event does not validate.
    """
    items = check_commit(body, catalogue=False)
    try:
        return tuple(CloudEvent.model_validate(i) for i in items)
    except ValidationError as exc:
        raise InvalidEvent(f"commit body is not a CloudEvents batch: {exc}") from exc


@dataclass(frozen=True)
class RecordedCommit:
    """A commit as read back from the stream, with its stream sequence (1-based) and storage time."""

    seq: int
    subject: str
    events: tuple[CloudEvent, ...]
    stored_at: datetime | None = None

    @property
    def version(self) -> int:
        return self.events[-1].aggregateversion
