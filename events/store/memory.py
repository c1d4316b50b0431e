"""In-memory event store for unit tests of handlers. Behaves like the JetStream store (same contract suite):
global sequences, per-aggregate optimistic concurrency, ``msg_id`` de-duplication (no window: forever)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import AsyncIterator

from events.envelope import AggregateRef, Commit, RecordedCommit
from events.errors import ConcurrencyError
from events.store.port import AppendResult, Head, RawMessage
from events.subjects import EVENT_PREFIX, parse_subject


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching (``*`` one token, ``>`` one or more trailing tokens)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


class InMemoryEventStore:
    def __init__(self) -> None:
        self._log: list[RecordedCommit] = []
        self._last_by_aggregate: dict[str, tuple[int, int]] = {}  # subject wildcard -> (seq, version)
        self._msg_ids: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def append(self, commit: Commit, *, expected_seq: int) -> AppendResult:
        # Like JetStream: a repeated msg id is a duplicate (the first commit's seq), whatever the expectation.
        if commit.msg_id in self._msg_ids:
            return AppendResult(self._msg_ids[commit.msg_id], duplicate=True)
        key = commit.aggregate.subject()
        last_seq, last_version = self._last_by_aggregate.get(key, (0, 0))
        if last_seq != expected_seq:
            base = commit.events[0].aggregateversion - 1
            raise ConcurrencyError(str(commit.aggregate), base, last_version)
        subject, _, _ = commit.encode()
        seq = len(self._log) + 1
        self._log.append(RecordedCommit(seq, subject, commit.events, datetime.now(timezone.utc)))
        self._last_by_aggregate[key] = (seq, commit.version)
        self._msg_ids[commit.msg_id] = seq
        async with self._changed:
            self._changed.notify_all()
        return AppendResult(seq)

    async def load(self, aggregate: AggregateRef, *, after_seq: int = 0) -> list[RecordedCommit]:
        key = aggregate.subject()
        return [c for c in self._log[after_seq:] if subject_matches(key, c.subject)]

    async def head(self, aggregate: AggregateRef) -> Head:
        return Head(*self._last_by_aggregate.get(aggregate.subject(), (0, 0)))

    async def last_seq(self) -> int:
        return len(self._log)

    async def read(
        self, *, after_seq: int = 0, subject_filter: str = f"{EVENT_PREFIX}.>", follow: bool = False
    ) -> AsyncIterator[RecordedCommit]:
        pos = after_seq
        end = len(self._log)
        while True:
            while pos < len(self._log) and (follow or pos < end):
                commit = self._log[pos]
                pos += 1
                if subject_matches(subject_filter, commit.subject):
                    yield commit
            if not follow:
                return
            async with self._changed:
                await self._changed.wait_for(lambda: len(self._log) > pos)

    async def read_raw(
        self, *, after_seq: int = 0, subject_filter: str = f"{EVENT_PREFIX}.>", follow: bool = False
    ) -> AsyncIterator[RawMessage]:
        async for c in self.read(after_seq=after_seq, subject_filter=subject_filter, follow=follow):
            subject, headers, body = Commit(AggregateRef(*parse_subject(c.subject)[:3]), c.events, "").encode()
            pending = sum(1 for later in self._log[c.seq:] if subject_matches(subject_filter, later.subject))
            yield RawMessage(c.seq, c.subject, body, headers, c.stored_at, pending)
