"""The projection contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from events.catalogue.base import EventPayload, payload_class
from events.shape import check_commit


@dataclass(frozen=True)
class EventRecord:
    """One event as projections see it: stream position plus the CloudEvent as a plain dict (parsed once per
    commit with ``json``, not pydantic, because replay speed matters; use :meth:`payload` for a typed view)."""

    seq: int
    subject: str
    stored_at: datetime | None
    event: dict[str, Any]
    index: int = 0
    """Position of the event within its commit (0-based)."""

    @property
    def type(self) -> str:
        return self.event["eventtype"]

    @property
    def data(self) -> dict[str, Any]:
        return self.event["data"]

    def payload(self) -> EventPayload:
        cls = payload_class(self.type)
        return cls.model_validate(cls.upcast(dict(self.data), self.event.get("schemaversion", 1)))


def records(seq: int, subject: str, stored_at: datetime | None, body: bytes) -> list[EventRecord]:
    """Split one commit body (a CloudEvents JSON batch) into records, after checking the whole commit's shape
    (:func:`events.shape.check_commit` with the catalogue): a commit is applied whole or not at all.

    Raises:
        InvalidEvent: the body is not a valid commit (the message says why).
    """
    return [EventRecord(seq, subject, stored_at, item, index)
            for index, item in enumerate(check_commit(body, catalogue=True))]


class Projection(ABC):
    """A read model. Subclasses set ``name``, ``version``, ``tables`` (table name → CREATE statement(s)) and
    ``event_types`` (None: every event), and implement :meth:`apply`.

    ``apply`` runs inside the runner's transaction: it must only write with the given connection, and must be
    deterministic (no wall-clock, no randomness) so a rebuild gives identical tables (``audit verify``).
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    tables: ClassVar[dict[str, str]]
    event_types: ClassVar[frozenset[str] | None] = None

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types

    @abstractmethod
    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        """Write what ``record`` changes.

        An exception skips the record's whole commit for this projection (the runner rolls back what this
        projection wrote for it, records the skip and goes on), except an infrastructure failure of SQLite
        (:func:`projections.failures.is_infrastructure`), which rolls back the batch and stops the runner so
        nothing is skipped for a full disk. So raise on data you cannot apply; never swallow a SQLite error.
        """
