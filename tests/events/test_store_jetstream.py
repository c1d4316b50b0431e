import asyncio
import time

import pytest

from events.store import jetstream
from events.store.jetstream import JetStreamEventStore
from events.subjects import EVENT_STREAM
from tests.events.store_contract import StoreContract
from tests.support import eventually


class TestJetStreamStore(StoreContract):
    """The contract against a real nats-server (JetStream file storage)."""

    @pytest.fixture
    def store(self, js_store):
        return js_store


# --- the replay behind read()/read_raw(): flow control and ordered-consumer recovery ---------------------------

async def test_a_reader_slower_than_the_server_still_gets_every_message_in_order(nc, monkeypatch):
    """Enough bytes for the server to ask for flow control several times (its window is tens of MB): the replay
    answers as the reader takes messages, so a slow reader neither stalls the consumer (no restart needed)
    nor loses messages."""
    js = nc.jetstream()
    body = b"x" * (1 << 20)
    for i in range(48):
        await js.publish(f"nc.evt.test.blob.b{i}.BlobStored", body)
    calls = spy(monkeypatch, "start", "_owe_flow_control")
    seqs = []
    async for raw in JetStreamEventStore(nc).read_raw():
        seqs.append(raw.seq)
        await asyncio.sleep(0.005)
    assert seqs == list(range(1, 49))
    assert calls["_owe_flow_control"] >= 1 and calls["start"] == 1


async def test_a_replay_whose_consumer_vanished_resumes_after_the_last_message_read(nc):
    """The consumer is deleted mid-replay (as a server restart loses it): after two silent heartbeat intervals
    the replay recreates it after the last message it had, with nothing lost or repeated."""
    await fill(nc, 6)
    store = JetStreamEventStore(nc, replay_heartbeat=0.2)
    seen = []
    async for raw in store.read_raw(follow=True):
        seen.append(raw.seq)
        if raw.seq == 3:
            for name in await consumer_names(nc):
                await nc.jetstream().delete_consumer(EVENT_STREAM, name)
            await fill(nc, 2, start=6)
        if raw.seq == 8:
            break
    assert seen == list(range(1, 9))


async def test_a_follow_goes_on_after_a_server_restart(nats_server, nc):
    """The restarted server has lost the (memory) consumer: the follower recreates it once reconnected and
    delivers what was appended after the restart, nothing twice."""
    await fill(nc, 3)
    store = JetStreamEventStore(nc, replay_heartbeat=0.2)
    seen = []
    task = following(store, seen, until=5)
    await eventually(lambda: seen == [1, 2, 3])
    nats_server.stop()
    nats_server.start()
    await eventually(lambda: jetstream_ready(nc), timeout=20)
    await fill(nc, 2, start=3)
    await asyncio.wait_for(task, 30)
    assert seen == [1, 2, 3, 4, 5]


async def test_a_follow_resumes_on_reconnecting_to_a_restarted_server_without_waiting_for_missed_heartbeats(nats_server, nc):
    """With heartbeats a minute apart, silence would stall the follower for two minutes after a restart (as
    `nanoclaw up` restarts a crashed embedded server): the reconnect itself recreates the lost consumer."""
    await fill(nc, 3)
    store = JetStreamEventStore(nc, replay_heartbeat=60)
    seen = []
    task = following(store, seen, until=5)
    await eventually(lambda: seen == [1, 2, 3])
    nats_server.kill()
    nats_server.start()
    await eventually(lambda: jetstream_ready(nc), timeout=20)
    await fill(nc, 2, start=3)
    async with asyncio.timeout(30):  # < 2 × 60 s: only the reconnect can have recreated the consumer
        await task
    assert seen == [1, 2, 3, 4, 5]


async def test_a_message_lost_on_the_way_is_read_again_in_order(nc, monkeypatch):
    """A gap in the delivery sequence (a message dropped between server and reader) restarts the consumer after
    the last message queued, as nats-py's ordered consumer does."""
    await fill(nc, 10)
    original = jetstream._OrderedReplay._on_msg
    dropped = []

    async def lossy(self, msg):
        if msg.data and msg.reply and not dropped and msg.reply.split(".")[5] == "4":
            dropped.append(msg)  # stream sequence 4 never reaches the queue
            return
        await original(self, msg)

    monkeypatch.setattr(jetstream._OrderedReplay, "_on_msg", lossy)
    calls = spy(monkeypatch, "start")
    assert [raw.seq async for raw in JetStreamEventStore(nc).read_raw()] == list(range(1, 11))
    assert dropped and calls["start"] == 2


def following(store, seen: list[int], *, until: int) -> asyncio.Task:
    """A task following the whole stream into ``seen`` (stream sequences) until it has read ``until``."""
    async def follow() -> None:
        async for raw in store.read_raw(follow=True):
            seen.append(raw.seq)
            if raw.seq == until:
                return
    return asyncio.create_task(follow())


async def fill(nc, n: int, start: int = 0) -> None:
    js = nc.jetstream()
    for i in range(start, start + n):
        await js.publish(f"nc.evt.test.counter.c{i}.CounterIncremented", b"[]")


async def jetstream_ready(nc) -> bool:
    try:
        return nc.is_connected and bool(await nc.jetstream(timeout=0.5).stream_info(EVENT_STREAM))
    except Exception:
        return False


async def consumer_names(nc) -> list[str]:
    return [c.name for c in await nc.jetstream().consumers_info(EVENT_STREAM)]


def spy(monkeypatch, *methods: str) -> dict[str, int]:
    """Count calls of ``_OrderedReplay`` methods."""
    calls = dict.fromkeys(methods, 0)
    for name in methods:
        def counted(self, *args, _name=name, _original=getattr(jetstream._OrderedReplay, name), **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(jetstream._OrderedReplay, name, counted)
    return calls


async def test_a_follow_ends_when_cancelled_even_as_a_message_arrives(nc):
    """Stopping a service cancels its read model's follow. A cancel that lands while a new message wakes the
    reader must still end it (on Python 3.11, ``asyncio.wait_for`` could swallow such a cancel and the stop
    hung for good)."""
    js = nc.jetstream()
    store = JetStreamEventStore(nc)
    for attempt in range(40):
        async def follow() -> None:
            async for _ in store.read_raw(follow=True):
                pass
        task = asyncio.create_task(follow())
        await asyncio.sleep(0.05)  # the reader now waits for news
        await js.publish(f"nc.evt.test.tick.t{attempt}.Ticked", b"{}")
        for _ in range(attempt % 8):
            await asyncio.sleep(0)  # cancel at a different point of the wake-up each time
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, f"the follow ignored its cancellation (attempt {attempt})"


async def test_a_follow_starved_of_the_event_loop_keeps_its_consumer(nc, monkeypatch):
    """A synchronous call that blocks the whole process for longer than two heartbeat intervals (a Docker SDK
    call, a slow disk) is not a silent consumer: the heartbeats were waiting in the socket. The follow goes on
    with the same consumer and misses nothing."""
    await fill(nc, 2)
    store = JetStreamEventStore(nc, replay_heartbeat=0.2)
    calls = spy(monkeypatch, "start")
    seen = []
    task = following(store, seen, until=4)
    await eventually(lambda: seen == [1, 2])
    await asyncio.sleep(1.1)  # the follow is waiting for news when ...
    time.sleep(2.0)  # ... the loop blocks for 10 heartbeat intervals
    await fill(nc, 2, start=2)
    await asyncio.wait_for(task, 10)
    assert seen == [1, 2, 3, 4] and calls["start"] == 1
