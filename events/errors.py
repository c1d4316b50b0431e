"""Errors raised by the event layer. Each names what went wrong so a log line is enough to act on."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class for event-store failures."""


class ConcurrencyError(EventStoreError):
    """A save was based on a stale version of its aggregate (optimistic concurrency).

    Callers reload the aggregate and retry the command.
    """

    def __init__(self, aggregate: str, expected_version: int, actual_version: int | None):
        self.aggregate = aggregate
        self.expected_version = expected_version
        self.actual_version = actual_version
        actual = "unknown" if actual_version is None else str(actual_version)
        super().__init__(
            f"concurrent change to aggregate {aggregate}: the save expected version {expected_version}, "
            f"but the stream holds version {actual}; reload and retry"
        )


class UnknownEventType(EventStoreError):
    """A message names an event type that is not in the catalogue."""


class InvalidEvent(EventStoreError):
    """A message or payload could not be parsed or validated."""
