"""The event-store port: what services, repositories and projections need from a store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import AsyncIterator, Protocol

from events.envelope import AggregateRef, Commit, RecordedCommit


@dataclass(frozen=True)
class RawMessage:
    """One stream message before decoding (for projections, which parse lazily). ``num_pending``: messages
    matching the read's filter still after this one (0 at the end of the log)."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None
    stored_at: datetime | None
    num_pending: int


@dataclass(frozen=True)
class Head:
    """Where an aggregate stands: the stream sequence and aggregate version of its last commit (0, 0 if new)."""

    seq: int = 0
    version: int = 0


@dataclass(frozen=True)
class AppendResult:
    """Outcome of an append: the commit's stream sequence, and whether it was a duplicate of an earlier
    append with the same ``Nats-Msg-Id`` (then ``seq`` is the earlier commit's)."""

    seq: int
    duplicate: bool = False


class EventStore(Protocol):
    async def append(self, commit: Commit, *, expected_seq: int) -> AppendResult:
        """Store ``commit`` atomically if the aggregate's last commit is still at ``expected_seq``
        (0: the aggregate must have no commits yet).

        A commit whose ``msg_id`` was stored within the duplicate window is not stored again: the result
        has ``duplicate=True``.

        Raises:
            ConcurrencyError: the aggregate has moved on (names the aggregate and both versions).
            EventStoreError: the store is unreachable or refused the write.
        """
        ...

    async def load(self, aggregate: AggregateRef, *, after_seq: int = 0) -> list[RecordedCommit]:
        """All commits of one aggregate with a stream sequence above ``after_seq``, in order."""
        ...

    async def head(self, aggregate: AggregateRef) -> Head:
        """The aggregate's last commit position and version: a cheap freshness check (no full load)."""
        ...

    async def last_seq(self) -> int:
        """The sequence of the newest commit in the stream (0 when empty)."""
        ...

    def read(self, *, after_seq: int = 0, subject_filter: str = "nc.evt.>", follow: bool = False) -> AsyncIterator[RecordedCommit]:
        """Commits in stream order after ``after_seq`` that match ``subject_filter``.

        With ``follow=False`` the iterator ends at the stream's last sequence as of the call; with
        ``follow=True`` it waits for new commits (a live subscription resuming exactly after ``after_seq``).
        A message that is not a valid commit (:func:`events.envelope.decode_events` refuses it) is skipped
        with a log line: one bad message must not end a reader (docs/events.md, "Bad messages in the log").
        """
        ...
