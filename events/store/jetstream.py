"""The JetStream event store (asyncio, nats-py).

- One message per commit; optimistic concurrency with ``Nats-Expected-Last-Subject-Sequence`` checked
  against the aggregate's wildcard subject (``Nats-Expected-Last-Subject-Sequence-Subject``), so the event type
  can stay in the subject.
- Idempotency with ``Nats-Msg-Id`` within the stream's duplicate window.
- Aggregate loads by batched direct get (``next_by_subj``, ADR-31); the full log by an ordered consumer.
Facts and measurements behind these choices: shared/reference/stack-notes.md §7 and §11.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import AsyncIterator

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError, NotFoundError

from events.chain import chain_headers, message_link
from events.envelope import HDR_VERSION, AggregateRef, Commit, RecordedCommit, decode_events
from events.errors import ConcurrencyError, EventStoreError, InvalidEvent
from events.catalogue.base import payload_class
from events.store.port import AppendResult, Head, RawMessage
from events.subjects import EVENT_PREFIX, EVENT_STREAM

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071
_EXPECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_EXPECT_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
_WAIT_S = 1.0  # a replay with nothing queued looks at its consumer's health this often (s)
_STALL_S = 0.5  # a wait that overran by more than this (s): the event loop was blocked, not the consumer silent
_LINKS_KEPT = 10_000  # aggregates whose last chain link an event store remembers (≈200 bytes each)


class JetStreamEventStore:
    """:class:`events.store.port.EventStore` on a JetStream stream.

    Args:
        nc: a connected nats-py client.
        stream: stream name (default ``NC_EVENTS``).
        timeout: seconds to wait for a publish ack or a read reply.
        load_batch: messages per batched direct-get request when loading an aggregate.
        replay_heartbeat: idle-heartbeat interval (s) of the consumers behind :meth:`read`; a consumer silent
            for two intervals is recreated.
    """

    def __init__(self, nc: Client, *, stream: str = EVENT_STREAM, timeout: float = 5.0, load_batch: int = 512,
                 replay_heartbeat: float = 5.0):
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._stream = stream
        self._timeout = timeout
        self._load_batch = load_batch
        self._replay_heartbeat = replay_heartbeat
        # aggregate subject -> (stream seq, chain link) of its last commit this store saw (appended or loaded)
        self._links: OrderedDict[str, tuple[int, str]] = OrderedDict()

    async def append(self, commit: Commit, *, expected_seq: int) -> AppendResult:
        key = commit.aggregate.subject()
        prev = await self._link_at(key, expected_seq)
        subject, headers, body = append_message(commit, expected_seq=expected_seq, prev_link=prev)
        try:
            ack = await self._js.publish(subject, body, headers=headers, stream=self._stream)
        except BadRequestError as exc:
            self._links.pop(key, None)
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
        if ack.duplicate:  # the stored message is an earlier attempt's, whose chain headers may differ
            self._links.pop(key, None)
        else:
            self._remember(key, ack.seq, headers)
        return AppendResult(ack.seq, bool(ack.duplicate))

    async def _link_at(self, key: str, seq: int) -> str:
        """The chain link of the aggregate's commit at stream ``seq`` ("" for a new aggregate): from memory when
        this store appended or loaded it last, else one direct get. Linking to the message at the *expected*
        sequence is what makes the chain right under concurrent writers: the server stores the commit only if
        that message is still the aggregate's last (events/chain.py)."""
        if seq == 0:
            return ""
        known = self._links.get(key)
        if known is not None and known[0] == seq:
            return known[1]
        try:
            msg = await self._js.get_msg(self._stream, seq, direct=True)
        except NotFoundError:
            return ""  # the commit would be refused anyway: the aggregate has no message at ``seq``
        except nats.errors.TimeoutError as exc:
            raise EventStoreError(f"direct get of seq {seq} on {self._stream}: no answer within {self._timeout}s") from exc
        return message_link(msg.subject or "", msg.headers, msg.data or b"")

    def _remember(self, key: str, seq: int, headers: dict[str, str] | None, body: bytes = b"",
                  subject: str = "") -> None:
        self._links[key] = (seq, message_link(subject, headers, body))
        self._links.move_to_end(key)
        while len(self._links) > _LINKS_KEPT:
            self._links.popitem(last=False)

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
        """A message on the aggregate's subject that is not a valid commit comes back with no events: its
        position still counts (the next save expects it), its content does not (docs/events.md)."""
        out: list[RecordedCommit] = []
        last = None
        async for raw in self._direct_get_batches(aggregate.subject(), after_seq + 1):
            try:
                events = decode_events(raw.data)
            except InvalidEvent as exc:
                log.warning("message seq %s on %s is not a valid commit; skipped by loads of %s: %s", raw.seq,
                            raw.subject, aggregate, exc)
                events = ()
            out.append(RecordedCommit(raw.seq, raw.subject, events, raw.stored_at))
            last = raw
        if last is not None:  # the next save of this aggregate links to it without asking the server
            self._remember(aggregate.subject(), last.seq, last.headers, last.data, last.subject)
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
        # The version of the last commit that is a save of this aggregate, as a replay sees it
        # (events/aggregate.py): a message on its subject that is not one (not a valid commit, another
        # aggregate's events, a payload that does not validate, a forged or missing header) must not set the
        # version of the next commit.
        version = _save_version(aggregate, msg.data or b"")
        if version is None:
            version = next((v for c in reversed(await self.load(aggregate))
                            if (v := _events_version(aggregate, c.events)) is not None), 0)
        return Head(seq, version)

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
            try:
                events = decode_events(raw.data)
            except InvalidEvent as exc:  # one bad message must not end a reader (docs/events.md)
                log.warning("message seq %s on %s is not a valid commit; skipped: %s", raw.seq, raw.subject, exc)
                continue
            yield RecordedCommit(raw.seq, raw.subject, events, raw.stored_at)

    async def read_raw(
        self, *, after_seq: int = 0, subject_filter: str = f"{EVENT_PREFIX}.>", follow: bool = False
    ) -> AsyncIterator[RawMessage]:
        """Like :meth:`read`, without decoding: for replays where parsing is the projection's business."""
        if not follow and await self.last_seq() <= after_seq:
            return
        replay = _OrderedReplay(self._nc, self._js, self._stream, subject_filter, after_seq + 1,
                                self._replay_heartbeat)
        info = await replay.start()
        try:
            if not follow and info.num_pending == 0:
                return  # nothing matches the filter after after_seq
            async for raw in replay.messages(follow=follow):
                yield raw
        finally:
            await replay.close()


class _OrderedReplay:
    """An ordered read of the stream: an ephemeral push consumer (no acks, flow control, idle heartbeats)
    delivering to a plain subscription whose callback parses the reply subject and queues the message.

    Why not nats-py's ordered consumer read with ``async for msg in sub.messages`` (what this replaced)?
    Measured with bench/store_bench.py (100k events of ≈0.9 kB, 2 cores, docs/benchmarks.md): that iterator
    costs ≈15 µs per message in asyncio (a task plus ``asyncio.wait`` per message) and ``msg.metadata`` ≈3–4
    µs more; without them the raw read went from ≈34 to ≈15 µs per message (≈29k → ≈65k events/s) and the audit
    rebuild from ≈23k to ≈38k events/s. What is left is mostly nats-py parsing each message's headers.
    nats-py with a callback avoids the iterator, but then answers flow control when a message *arrives*
    rather than when it is *taken*, so a reader slower than the server (every projection) would pull the
    rest of the log into memory. Here a flow-control request is answered only once the reader has taken
    every message delivered before it, which bounds the queue by the server's flow-control window.

    Ordered-consumer recovery as in nats-py: a gap in the consumer sequence (a message lost on the way),
    heartbeats missing for two intervals (the consumer is gone) or a reconnect (the server may have restarted
    and lost the ephemeral consumer) recreate the consumer from the stream sequence after the last message
    queued. Silence is only counted while the event loop runs: a loop blocked for longer than that could not
    have read the heartbeats waiting in the socket.
    """

    def __init__(self, nc: Client, js: JetStreamContext, stream: str, subject_filter: str, start_seq: int,
                 heartbeat: float = 5.0):
        self._nc = nc
        self._js = js
        self._stream = stream
        self._filter = subject_filter
        self._next_seq = start_seq  # where a (re)created consumer starts: after the last message queued
        self._heartbeat = heartbeat
        self._queue: deque[RawMessage] = deque()
        self._ready = asyncio.Event()
        self._sub = None
        self._generation = 0  # messages of a replaced subscription are ignored
        self._expect_dseq = 1  # the current consumer's next delivery sequence
        self._queued = 0  # data messages queued from the current consumer ...
        self._taken = 0  # ... and how many of them the reader took
        self._flow: deque[tuple[int, str]] = deque()  # flow-control replies owed: (queued when asked, subject)
        self._broken = False  # gap or silence: recreate the consumer once the queue is drained
        self._last_seen = 0.0  # loop time of the last delivery or heartbeat
        self._reconnects = 0  # the connection's reconnect count when the consumer was created

    async def start(self) -> api.ConsumerInfo:
        """Subscribe and create the consumer; its info tells how many messages match (``num_pending``)."""
        loop = asyncio.get_running_loop()
        self._generation += 1
        generation = self._generation
        self._expect_dseq, self._queued, self._taken = 1, 0, 0
        self._flow.clear()
        self._broken = False
        self._last_seen = loop.time()
        self._reconnects = self._nc.stats["reconnects"]

        async def on_msg(msg) -> None:
            if generation == self._generation and not self._broken:
                await self._on_msg(msg)

        inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(inbox, cb=on_msg)
        config = api.ConsumerConfig(
            deliver_subject=inbox, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._next_seq,
            filter_subject=self._filter, ack_policy=api.AckPolicy.NONE, max_deliver=1, flow_control=True,
            idle_heartbeat=self._heartbeat, mem_storage=True, num_replicas=1,
        )
        try:
            return await self._js.add_consumer(self._stream, config=config)
        except BaseException:
            await self._unsubscribe()
            raise

    async def _on_msg(self, msg) -> None:
        self._last_seen = asyncio.get_running_loop().time()
        reply = msg.reply
        if not reply or not reply.startswith("$JS.ACK."):
            # Not a stream message: a status "100" is a flow-control request (with a reply subject) or an idle
            # heartbeat (without), which names the last delivery sequence (a mismatch means messages were lost)
            # and, when the consumer stalls waiting for a flow-control reply, the subject to send it to.
            hdrs = msg.headers or {}
            if hdrs.get("Status") != "100":
                return
            if reply:
                await self._owe_flow_control(reply)
                return
            if hdrs.get("Nats-Consumer-Stalled"):
                await self._owe_flow_control(hdrs["Nats-Consumer-Stalled"])
            if int(hdrs.get("Nats-Last-Consumer", self._expect_dseq - 1)) != self._expect_dseq - 1:
                self._broken = True
                self._ready.set()
            return
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<delivery seq>.<ns>.<pending> (9 tokens), or with
        # <domain>.<account hash> after ACK and a random token at the end (12). A split and four int() calls
        # instead of msg.metadata (a dataclass tree per message): ≈3–4 µs less per message.
        t = reply.split(".")
        o = 0 if len(t) == 9 else 2
        dseq = int(t[6 + o])
        if dseq != self._expect_dseq:
            self._broken = True  # a message lost on the way: start again after the last one queued
            self._ready.set()
            return
        self._expect_dseq = dseq + 1
        seq = int(t[5 + o])
        self._next_seq = seq + 1
        stored_at = datetime.fromtimestamp(int(t[7 + o]) / 1e9, timezone.utc)
        self._queue.append(RawMessage(seq, msg.subject, msg.data, msg.headers, stored_at, int(t[8 + o])))
        self._queued += 1
        self._ready.set()

    async def _owe_flow_control(self, subject: str) -> None:
        """Reply once the reader has taken everything queued so far (now, if it has)."""
        if self._taken >= self._queued:
            await self._nc.publish(subject)
        else:
            self._flow.append((self._queued, subject))

    async def messages(self, *, follow: bool) -> AsyncIterator[RawMessage]:
        """Queued messages in order; without ``follow``, up to the first one with nothing pending after it."""
        loop = asyncio.get_running_loop()
        queue, flow = self._queue, self._flow
        while True:
            while queue:
                raw = queue.popleft()
                self._taken += 1
                while flow and self._taken >= flow[0][0]:
                    await self._nc.publish(flow.popleft()[1])
                yield raw
                if not follow and raw.num_pending == 0:
                    return
            if self._nc.is_closed:
                raise nats.errors.ConnectionClosedError  # as nats-py's iterator ended, then unsubscribe() raised
            if self._broken:
                await self._restart()
                continue
            self._ready.clear()
            waited_from = loop.time()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that lands as the
                # event is set, and this loop would then follow forever (a service stop hung on it).
                async with asyncio.timeout(_WAIT_S):
                    await self._ready.wait()
            except TimeoutError:
                now = loop.time()
                if now - waited_from > _WAIT_S + _STALL_S:
                    # The event loop itself was blocked (a synchronous call elsewhere in the process): heartbeats
                    # may be sitting unread in the socket, so the silence says nothing about the consumer. Seen
                    # in tests: a 13 s blocking Docker call made every follow in the process recreate its consumer.
                    self._last_seen = now
                elif now - self._last_seen > 2 * self._heartbeat or self._nc.stats["reconnects"] != self._reconnects:
                    # Silent, or the connection came back: after a server restart (`up` restarts its embedded
                    # one) the ephemeral consumer is gone, and waiting for two missed heartbeats would stall the
                    # read model for 2 × heartbeat s. Recreating an intact one costs one request.
                    self._broken = True

    async def _restart(self) -> None:
        log.info("replay of %s: recreating the consumer at stream sequence %s", self._stream, self._next_seq)
        await self._unsubscribe()
        try:
            await self.start()
        except (nats.errors.Error, APIError, asyncio.TimeoutError) as exc:
            log.warning("replay of %s: could not recreate the consumer (%s); retrying", self._stream, exc)
            self._broken = True
            await asyncio.sleep(1.0)

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None and not self._nc.is_closed:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass

    async def close(self) -> None:
        await self._unsubscribe()


def append_message(commit: Commit, *, expected_seq: int, prev_link: str = "") -> tuple[str, dict[str, str], bytes]:
    """``(subject, headers, body)`` that :meth:`JetStreamEventStore.append` publishes for ``commit``: the
    commit's own message plus the optimistic-concurrency headers and the chain headers linking it to
    ``prev_link``, the link of the aggregate's commit at ``expected_seq`` ("" for a new aggregate;
    events/chain.py). bench/ publishes the same messages in bulk."""
    subject, headers, body = commit.encode()
    headers.update(chain_headers(prev_link, subject, headers, body))
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


def _save_version(aggregate: AggregateRef, body: bytes) -> int | None:
    """The aggregate version after the commit ``body``; None if it is no save of ``aggregate``."""
    try:
        events = decode_events(body)
    except InvalidEvent:
        return None
    return _events_version(aggregate, events)


def _events_version(aggregate: AggregateRef, events) -> int | None:
    """The version after ``events`` if every one is a valid event of ``aggregate``'s type, else None."""
    if not events:
        return None
    try:
        for ce in events:
            cls = payload_class(ce.eventtype)
            if (cls.context, cls.aggregate) != (aggregate.context, aggregate.type):
                return None
            ce.payload()
    except EventStoreError:  # InvalidEvent, UnknownEventType
        return None
    return events[-1].aggregateversion
