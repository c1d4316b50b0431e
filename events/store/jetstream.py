"""The JetStream event store (asyncio, nats-py).

- One message per commit; optimistic concurrency with ``Nats-Expected-Last-Subject-Sequence`` checked
  against the aggregate's wildcard subject (``Nats-Expected-Last-Subject-Sequence-Subject``), so the event type
  can stay in the subject.
- Idempotency with ``Nats-Msg-Id`` within the stream's duplicate window.
- Aggregate loads by batched direct get (``next_by_subj``, ADR-31); the full log by an ordered consumer.
Facts and measurements behind these choices: shared/reference/stack-notes.md §7 and §11.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import AsyncIterator

import nats.errors
from nats.aio.client import Client
from nats.js import api
from nats.js.errors import APIError, BadRequestError, NotFoundError

from events.envelope import HDR_VERSION, AggregateRef, Commit, RecordedCommit, decode_events
from events.errors import ConcurrencyError, EventStoreError
from events.store.port import AppendResult, Head, RawMessage
from events.subjects import EVENT_PREFIX, EVENT_STREAM

WRONG_LAST_SEQUENCE = 10071
_EXPECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_EXPECT_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"


class JetStreamEventStore:
    """:class:`events.store.port.EventStore` on a JetStream stream.

    Args:
        nc: a connected nats-py client.
        stream: stream name (default ``NC_EVENTS``).
        timeout: seconds to wait for a publish ack or a read reply.
        load_batch: messages per batched direct-get request when loading an aggregate.
    """

    def __init__(self, nc: Client, *, stream: str = EVENT_STREAM, timeout: float = 5.0, load_batch: int = 512):
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._stream = stream
        self._timeout = timeout
        self._load_batch = load_batch

    async def append(self, commit: Commit, *, expected_seq: int) -> AppendResult:
        subject, headers, body = append_message(commit, expected_seq=expected_seq)
        try:
            ack = await self._js.publish(subject, body, headers=headers, stream=self._stream)
        except BadRequestError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return await self._resolve_conflict(commit, expected_seq, exc)
            raise EventStoreError(f"stream {self._stream} refused the commit to {commit.aggregate}: {exc.description}") from exc
        except APIError as exc:
            raise EventStoreError(f"stream {self._stream} refused the commit to {commit.aggregate}: {exc}") from exc
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            raise EventStoreError(
                f"no ack for the commit to {commit.aggregate} within {self._timeout}s "
                f"(NATS unreachable, JetStream down, or publishing to {subject} not permitted)"
            ) from exc
        return AppendResult(ack.seq, bool(ack.duplicate))

    async def _resolve_conflict(self, commit: Commit, expected_seq: int, exc: Exception) -> AppendResult:
        """The server checks the expected sequence *before* de-duplication, so a retried publish whose first
        attempt was stored (ack lost) also fails the check. Look for our ``Nats-Msg-Id`` among the commits
        after ``expected_seq``: found, it is a duplicate; otherwise a real conflict."""
        actual: int | None = None
        async for raw in self._direct_get_batches(commit.aggregate.subject(), expected_seq + 1):
            hdrs = raw.headers or {}
            if hdrs.get("Nats-Msg-Id") == commit.msg_id:
                return AppendResult(raw.seq, duplicate=True)
            actual = int(hdrs[HDR_VERSION]) if hdrs.get(HDR_VERSION) else actual
        base = commit.events[0].aggregateversion - 1
        raise ConcurrencyError(str(commit.aggregate), base, actual) from exc

    async def load(self, aggregate: AggregateRef, *, after_seq: int = 0) -> list[RecordedCommit]:
        out: list[RecordedCommit] = []
        async for raw in self._direct_get_batches(aggregate.subject(), after_seq + 1):
            out.append(RecordedCommit(raw.seq, raw.subject, decode_events(raw.data), raw.stored_at))
        return out

    async def _direct_get_batches(self, subject: str, start_seq: int) -> AsyncIterator[RawMessage]:
        """Batched direct get (nats-server ≥ 2.11): the server streams up to ``load_batch`` messages
        and ends each batch with a ``204 EOB`` status carrying ``Nats-Num-Pending``."""
        api_subject = f"$JS.API.DIRECT.GET.{self._stream}"
        seq = start_seq
        while True:
            inbox = self._nc.new_inbox()
            sub = await self._nc.subscribe(inbox)
            pending = "0"
            try:
                req = json.dumps({"seq": seq, "batch": self._load_batch, "next_by_subj": subject}).encode()
                await self._nc.publish(api_subject, req, reply=inbox)
                while True:
                    try:
                        msg = await sub.next_msg(timeout=self._timeout)
                    except nats.errors.TimeoutError as exc:
                        raise EventStoreError(f"direct get on {self._stream} for {subject} timed out") from exc
                    hdrs = msg.headers or {}
                    status = hdrs.get("Status")
                    if status == "404":
                        return
                    if status == "204":
                        pending = hdrs.get("Nats-Num-Pending", "0")
                        break
                    if status:
                        raise EventStoreError(f"direct get on {self._stream} failed: {status} {hdrs.get('Description', '')}")
                    seq = int(hdrs["Nats-Sequence"])
                    yield RawMessage(seq, hdrs["Nats-Subject"], msg.data, hdrs, _parse_time(hdrs.get("Nats-Time-Stamp")), 0)
            finally:
                await sub.unsubscribe()
            if pending == "0":
                return
            seq += 1

    async def head(self, aggregate: AggregateRef) -> Head:
        try:
            msg = await self._js.get_last_msg(self._stream, aggregate.subject(), direct=True)
        except NotFoundError:
            return Head()
        except nats.errors.TimeoutError as exc:
            raise EventStoreError(f"last message of {aggregate}: no answer within {self._timeout}s") from exc
        hdrs = msg.headers or {}
        seq = int(msg.seq) if msg.seq else int(hdrs.get("Nats-Sequence", 0))
        return Head(seq, int(hdrs.get(HDR_VERSION, 0)))

    async def last_seq(self) -> int:
        try:
            info = await self._js.stream_info(self._stream)
        except nats.errors.TimeoutError as exc:
            raise EventStoreError(f"stream {self._stream}: no answer within {self._timeout}s") from exc
        return info.state.last_seq

    async def read(
        self, *, after_seq: int = 0, subject_filter: str = f"{EVENT_PREFIX}.>", follow: bool = False
    ) -> AsyncIterator[RecordedCommit]:
        async for raw in self.read_raw(after_seq=after_seq, subject_filter=subject_filter, follow=follow):
            yield RecordedCommit(raw.seq, raw.subject, decode_events(raw.data), raw.stored_at)

    async def read_raw(
        self, *, after_seq: int = 0, subject_filter: str = f"{EVENT_PREFIX}.>", follow: bool = False
    ) -> AsyncIterator[RawMessage]:
        """Like :meth:`read`, without decoding: for replays where parsing is the projection's business."""
        if not follow and await self.last_seq() <= after_seq:
            return
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1)
        sub = await self._js.subscribe(
            subject_filter, stream=self._stream, ordered_consumer=True, config=config,
            pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30,
        )
        try:
            if not follow:
                info = await sub.consumer_info()
                if info.num_pending == 0 and not info.delivered.consumer_seq:
                    return  # nothing matches the filter after after_seq
            async for msg in sub.messages:
                meta = msg.metadata
                yield RawMessage(meta.sequence.stream, msg.subject, msg.data, msg.headers, meta.timestamp, meta.num_pending)
                if not follow and meta.num_pending == 0:
                    return
        finally:
            await sub.unsubscribe()


def append_message(commit: Commit, *, expected_seq: int) -> tuple[str, dict[str, str], bytes]:
    """``(subject, headers, body)`` that :meth:`JetStreamEventStore.append` publishes for ``commit``: the
    commit's own message plus the optimistic-concurrency headers (bench/ publishes the same messages in bulk)."""
    subject, headers, body = commit.encode()
    headers[_EXPECT_SEQ] = str(expected_seq)
    headers[_EXPECT_SUBJECT] = commit.aggregate.subject()
    return subject, headers, body


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
