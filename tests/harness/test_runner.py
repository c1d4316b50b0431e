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


async def test_stop_ends_a_service_task_that_swallowed_its_cancel(nc, js_store):
    """On 3.11 a cancel landing as a nats-py request completes is swallowed (asyncio.wait_for); the task goes on.
    The stop cancels it again rather than waiting for it forever (a CI run hung 300 s on exactly this)."""
    cancels = []

    async def follow_forever(_deps):
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancels.append(1)
                if len(cancels) > 1:
                    raise

    runner = await run(Service("follower", tasks=[follow_forever]), nc, js_store)
    await asyncio.wait_for(runner.stop(), 10)
    assert len(cancels) == 2


async def _acked(nc) -> bool:
    info = await nc.jetstream().consumer_info("NC_EVENTS", consumer_name("pinger"))
    return info.num_ack_pending == 0 and info.num_pending == 0


async def _dead_letter_events(store):
    return [c.events[0].payload() async for c in store.read(subject_filter="nc.evt.system.deadletter.>")]


async def _has(store) -> bool:
    return bool(await _dead_letter_events(store))


async def test_a_request_subject_is_answered_as_soon_as_the_service_is_ready(nats_server, nc, js_store):
    # Readiness includes the server knowing the subscription: a sandbox's first tool call right after start
    # (on its own connection) must not get "no responders".
    import nats

    from services.harness.service import Reply

    async def answer(request, deps):
        return Reply.success({"echo": request.data["n"]})

    other = await nats.connect(nats_server.url)
    try:
        for attempt in range(5):
            runner = await run(Service("asker", {}, requests={f"nc.ipc.*.probe{attempt}": answer}), nc, js_store)
            try:
                reply = await other.request(f"nc.ipc.g.probe{attempt}", b'{"n": 1}', timeout=5)
                assert b'"echo": 1' in reply.data
            finally:
                await runner.stop()
    finally:
        await other.close()


async def test_a_late_notice_of_an_earlier_pull_request_does_not_hold_back_later_messages(nats_server, nc, js_store):
    # An idle consumer's pull request ends with the server's "408 Request Timeout", which often arrives just
    # after the client's own timer fired, i.e. while the next request is waiting. nats-py's fetch took it for
    # the answer to that next request and sent a second, lingering one; a message that request captured reached
    # the handler only when it expired (up to 1 s with the production window) or was redelivered after
    # ack_wait. A 30 s window and a 3 s ack_wait make that at least 3 s here, against milliseconds.
    handled: list[int] = []

    async def record(d):
        handled.append(d.payload.n)
        return []

    requests: list[str] = []  # reply subjects of the runner's pull requests, as the server sees them

    async def seen(msg):
        requests.append(msg.reply)

    spy = await nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.NC_EVENTS.{consumer_name('pinger')}", cb=seen)
    settings = HarnessSettings(max_deliver=3, retry_delays_s=[0.05], ack_wait_s=3)
    runner = ServiceRunner(pong_service(record), nc, js_store, settings, fetch_wait_s=30.0)
    await runner.start()
    try:
        await eventually(lambda: len(requests) >= 1)
        await ping(js_store, 1)
        await eventually(lambda: handled == [1])
        await eventually(lambda: len(requests) >= 2)  # the next request is waiting
        await _late_request_timeout(nats_server.url, requests[0])
        await ping(js_store, 2)
        await eventually(lambda: handled == [1, 2])
        await ping(js_store, 3)
        await eventually(lambda: handled == [1, 2, 3], timeout=2.0)  # a bound, not a speed claim: see above
    finally:
        await runner.stop()
        await spy.unsubscribe()


async def _late_request_timeout(url: str, reply: str) -> None:
    """Send ``reply`` the notice the server sends when a pull request expires (a status line nats-py cannot
    publish), over a raw connection, and wait until the server has routed it (PING → PONG)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        hdr = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 64\r\nNats-Pending-Bytes: 0\r\n\r\n"
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'
                     + f"HPUB {reply} {len(hdr)} {len(hdr)}\r\n".encode() + hdr + b"\r\nPING\r\n")
        await writer.drain()
        while (line := await asyncio.wait_for(reader.readline(), 5)) != b"PONG\r\n":
            assert not line.startswith(b"-ERR"), line
    finally:
        writer.close()
        await writer.wait_closed()
