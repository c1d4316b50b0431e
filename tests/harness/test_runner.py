"""The service adapter against a real nats-server: acks after effects, idempotent retries, dead letters."""

from __future__ import annotations

import asyncio

import pytest

from events.catalogue.base import EventPayload
from events.envelope import AggregateRef, new_commit
from events.subjects import DEAD_LETTER_STREAM
from services.harness.config import HarnessSettings
from services.harness.runner import ServiceRunner, consumer_name
from services.harness.service import Emit, Service
from tests.support import eventually, equals


class PingSent(EventPayload):
    context = "test"
    aggregate = "ping"
    n: int


class PongSent(EventPayload):
    context = "test"
    aggregate = "pong"
    n: int


FAST = HarnessSettings(max_deliver=3, retry_delays_s=[0.05], ack_wait_s=5)


async def ping(store, n: int, aggregate_id: str | None = None):
    ref = AggregateRef("test", "ping", aggregate_id or f"p{n}")
    return await store.append(new_commit(ref, [PingSent(n=n)], version=0, source="test"), expected_seq=0)


async def pongs(store) -> list[int]:
    return [c.events[0].payload().n async for c in store.read(subject_filter="nc.evt.test.pong.>")]


def pong_service(behaviour) -> Service:
    async def on_ping(delivery, deps):
        return await behaviour(delivery)
    return Service("pinger", {"PingSent": on_ping})


async def run(service, nc, store, settings=FAST) -> ServiceRunner:
    runner = ServiceRunner(service, nc, store, settings)
    await runner.start()
    return runner


async def test_handler_emits_are_appended_then_the_message_is_acked(nc, js_store):
    async def reply(d):
        return [Emit.new(f"pong{d.payload.n}", PongSent(n=d.payload.n))]

    runner = await run(pong_service(reply), nc, js_store)
    await ping(js_store, 1)
    await eventually(lambda: equals(pongs(js_store), [1]))
    info = await nc.jetstream().consumer_info("NC_EVENTS", consumer_name("pinger"))
    await eventually(lambda: _acked(nc))
    pong = [c async for c in js_store.read(subject_filter="nc.evt.test.pong.>")][0].events[0]
    ping_event = [c async for c in js_store.read(subject_filter="nc.evt.test.ping.>")][0].events[0]
    assert pong.causationid == ping_event.id and pong.correlationid == ping_event.correlationid
    assert info.config.max_deliver == 3
    await runner.stop()


async def test_a_redelivered_message_does_not_duplicate_the_emits_stored_before_the_failure(nc, js_store):
    attempts = []

    async def flaky(d):
        attempts.append(d.payload.n)
        if len(attempts) == 1:
            # Simulate a crash after the emit was stored but before the ack: store it, then fail.
            from services.harness.runner import append_emit
            await append_emit(js_store, Emit.new("pong7", PongSent(n=7)), source="pinger", msg_id=f"{d.event.id}:pinger:0", causation=d.event)
            raise RuntimeError("crash before ack")
        return [Emit.new("pong7", PongSent(n=7))]

    runner = await run(pong_service(flaky), nc, js_store)
    await ping(js_store, 7)
    await eventually(lambda: len(attempts) == 2)
    await eventually(lambda: _acked(nc))
    assert await pongs(js_store) == [7]
    await runner.stop()


async def test_a_message_that_keeps_failing_is_dead_lettered_with_an_error_event_and_the_service_keeps_running(nc, js_store):
    async def picky(d):
        if d.payload.n == 13:
            raise ValueError("unlucky number 13")
        return [Emit.new(f"pong{d.payload.n}", PongSent(n=d.payload.n))]

    runner = await run(pong_service(picky), nc, js_store)
    bad = await ping(js_store, 13)
    await ping(js_store, 14)
    await eventually(lambda: equals(pongs(js_store), [14]))
    await eventually(lambda: _has(js_store))
    dead = await _dead_letter_events(js_store)
    assert len(dead) == 1
    notice = dead[0]
    assert (notice.service, notice.stream_seq, notice.deliveries) == ("pinger", bad.seq, 3)
    assert "unlucky number 13" in notice.error and notice.subject.endswith(".PingSent")
    kept = await nc.jetstream().get_msg(DEAD_LETTER_STREAM, notice.dead_letter_seq)
    assert kept.headers["Nc-Original-Seq"] == str(bad.seq) and "unlucky" in kept.headers["Nc-Error"]
    assert b'"n":13' in kept.data
    assert runner.healthy
    await runner.stop()


async def test_an_unparseable_message_is_dead_lettered_on_first_delivery(nc, js_store):
    calls = []

    async def never(d):
        calls.append(d)
        return []

    runner = await run(pong_service(never), nc, js_store)
    await nc.jetstream().publish("nc.evt.test.ping.garbage.PingSent", b"{not json", stream="NC_EVENTS")
    await eventually(lambda: _has(js_store))
    notice = (await _dead_letter_events(js_store))[0]
    assert notice.deliveries == 1 and "not JSON" in notice.error and calls == []
    await runner.stop()


async def test_an_event_whose_payload_does_not_validate_is_dead_lettered(nc, js_store):
    runner = await run(pong_service(lambda d: asyncio.sleep(0, [])), nc, js_store)
    commit = new_commit(AggregateRef("test", "ping", "x"), [PingSent(n=1)], version=0, source="test")
    subject, headers, body = commit.encode()
    await nc.jetstream().publish(subject, body.replace(b'"n":1', b'"n":"one"'), headers=headers, stream="NC_EVENTS")
    await eventually(lambda: _has(js_store))
    notice = (await _dead_letter_events(js_store))[0]
    assert notice.deliveries == 1 and "PingSent" in notice.error
    await runner.stop()


async def test_stop_finishes_the_message_in_flight_and_acks_it(nc, js_store):
    entered = asyncio.Event()

    async def slow(d):
        entered.set()
        await asyncio.sleep(0.5)
        return [Emit.new("pong5", PongSent(n=5))]

    runner = await run(pong_service(slow), nc, js_store)
    await ping(js_store, 5)
    await asyncio.wait_for(entered.wait(), 10)
    await runner.stop()
    assert await pongs(js_store) == [5]
    assert await _acked(nc)



async def _acked(nc) -> bool:
    info = await nc.jetstream().consumer_info("NC_EVENTS", consumer_name("pinger"))
    return info.num_ack_pending == 0 and info.num_pending == 0


async def _dead_letter_events(store):
    return [c.events[0].payload() async for c in store.read(subject_filter="nc.evt.system.deadletter.>")]


async def _has(store) -> bool:
    return bool(await _dead_letter_events(store))
