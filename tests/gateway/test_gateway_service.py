"""The gateway on a real nats-server: webhook in and out, inbound buffering and dedupe, delivery receipts."""

from __future__ import annotations

import asyncio
import hmac
import json

import aiohttp
import pytest
from aiohttp import web

from events.catalogue.agent import AgentOutputProduced
from events.catalogue.chat import OutboundMessageRequested
from services.gateway.buffer import InboundBuffer
from services.gateway.config import HttpConfig, WhatsAppConfig
from services.gateway.http_channel import HttpChannel, WebhookError, bearer_matches
from services.gateway.outbound import MAX_SEND_ATTEMPTS, OutboundDeps, on_outbound_requested
from services.gateway.ports import ChannelDown
from services.gateway.service import build as build_gateway
from services.gateway.whatsapp.connection import register_handlers
from services.gateway.whatsapp_channel import WhatsAppChannel
from services.harness.config import Credentials, NatsSettings
from services.harness.connect import connect_nats
from services.harness.runner import ServiceRunner, append_emit
from services.harness.service import Emit, Service
from services.router.service import build as build_router
from events.store.jetstream import JetStreamEventStore
from tests.bus import FAST, context, events_of, running, settings
from tests.router.test_router_service import register
from tests.support import eventually, has_at_least


def http_settings(tmp_path, **http):
    return settings(tmp_path, channels={"http": {"port": 0, **http}})


def http_port(runner: ServiceRunner) -> HttpChannel:
    return runner.service.deps.channels["http"]


JSON = {"Content-Type": "application/json"}


async def post(port: int, body, headers=None) -> tuple[int, dict]:
    """POST ``body`` (an object: as JSON; str/bytes: as they are) with ``Content-Type: application/json`` unless
    ``headers`` say otherwise."""
    async with aiohttp.ClientSession() as s:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        async with s.post(f"http://127.0.0.1:{port}/v1/messages", data=data, headers={**JSON, **(headers or {})}) as r:
            assert r.content_type == "application/json", await r.text()
            return r.status, await r.json()


def always_registered():
    async def registered(_jid: str) -> bool:
        return True
    return registered


async def get(port: int, chat: str, after: int = 0, wait: float = 0) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/v1/chats/{chat}/messages", params={"after": after, "wait": wait}) as r:
            assert r.status == 200
            return await r.json()


async def test_a_webhook_message_becomes_a_message_received_event(js_store, nc, tmp_path):
    await register(js_store, jid="http:support", folder="support", requires_trigger=False)
    async with running(build_gateway, context(nc, js_store, http_settings(tmp_path))) as gw:
        await eventually(lambda: http_port(gw).port is not None)
        status, body = await post(http_port(gw).port, {"chat": "support", "sender": "ann", "text": "hello"})
        assert status == 202 and len(body["id"]) == 32
        await eventually(lambda: has_at_least(events_of(js_store, "MessageReceived"), 1))
    [msg] = await events_of(js_store, "MessageReceived")
    assert (msg.channel, msg.chat_jid, msg.message_id, msg.sender_name, msg.text) == ("http", "http:support", body["id"], "ann", "hello")


@pytest.mark.parametrize("body, status, field", [
    ({"sender": "ann", "text": "hi"}, 422, "chat"),
    ({"chat": "support", "sender": "ann", "text": 5}, 422, "text"),
    ({"chat": "support", "sender": "ann", "text": ""}, 422, "text"),
    ({"chat": "a b", "sender": "ann", "text": "hi"}, 422, "chat"),
    ({"chat": "support", "sender": "ann", "text": "hi", "colour": "red"}, 422, "colour"),
    ({"chat": "support", "sender": "ann", "text": "hi", "callback_url": "ftp://x"}, 422, "callback_url"),
    ("{not json", 400, None),
    ([1, 2], 400, None),
])
async def test_bad_webhook_bodies_get_a_4xx_naming_the_field_and_store_nothing(js_store, nc, tmp_path, body, status, field):
    async with running(build_gateway, context(nc, js_store, http_settings(tmp_path))) as gw:
        await eventually(lambda: http_port(gw).port is not None)
        got, err = await post(http_port(gw).port, body)
    assert got == status and err["field"] == field and err["error"]
    assert await js_store.last_seq() == 0


def test_an_exposed_webhook_without_a_token_refuses_to_start(tmp_path):
    with pytest.raises(WebhookError, match="webhook_token"):
        HttpChannel(HttpConfig(host="0.0.0.0"), InboundBuffer(tmp_path / "b.db"), tmp_path / "h.db", token=None,
                    registered=always_registered())


async def test_with_a_token_requests_need_the_bearer_header(js_store, nc, tmp_path):
    await register(js_store, jid="http:c", folder="c", requires_trigger=False)
    ctx = context(nc, js_store, http_settings(tmp_path), Credentials(webhook_token="s3cret"))
    wrong = [{}, *({"Authorization": v} for v in ("Bearer s3cre", "Bearer s3cret2", "bearer s3cret", "s3cret", "Bearer ",
                                                  "Bearer sécret"))]
    async with running(build_gateway, ctx) as gw:
        await eventually(lambda: http_port(gw).port is not None)
        port = http_port(gw).port
        refused = [await post(port, {"chat": "c", "sender": "a", "text": "x"}, headers) for headers in wrong]
        ok, _ = await post(port, {"chat": "c", "sender": "a", "text": "x"}, {"Authorization": "Bearer s3cret"})
        await eventually(lambda: has_at_least(events_of(js_store, "MessageReceived"), 1))
    assert refused == [(401, {"error": "missing or wrong bearer token", "field": "Authorization"})] * len(wrong)
    assert ok == 202
    [msg] = await events_of(js_store, "MessageReceived")  # only the right token got in
    assert msg.text == "x"


def test_the_bearer_token_is_compared_in_constant_time(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert bearer_matches("Bearer s3cret", "s3cret") and not bearer_matches("Bearer guess", "s3cret")
    assert not bearer_matches(None, "s3cret")
    assert compared == [(b"Bearer s3cret", b"Bearer s3cret"), (b"Bearer guess", b"Bearer s3cret")]


async def test_a_webhook_chat_gets_its_reply_by_callback_and_by_long_poll(js_store, nc, tmp_path):
    calls: list[dict] = []

    async def callback(request: web.Request) -> web.Response:
        calls.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.add_routes([web.post("/hook", callback)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    await register(js_store, jid="http:support", folder="support", requires_trigger=False)
    s = http_settings(tmp_path)
    try:
        async with running(build_router, context(nc, js_store, s)), running(build_gateway, context(nc, js_store, s)) as gw:
            await eventually(lambda: http_port(gw).port is not None)
            port = http_port(gw).port
            _, accepted = await post(port, {"chat": "support", "sender": "ann", "text": "where is my order?", "callback_url": hook})
            await eventually(lambda: has_at_least(events_of(js_store, "AgentTurnRequested"), 1))
            [turn] = await events_of(js_store, "AgentTurnRequested")
            assert turn.chat_jid == "http:support" and turn.channel == "http" and turn.message_ids == [accepted["id"]]
            poll = asyncio.create_task(get(port, "support", after=0, wait=10))
            out = AgentOutputProduced(run_id="r1", chat_jid="http:support", group_folder="support",
                                      text="<internal>look it up</internal>It ships today.")
            await append_emit(js_store, Emit.new("r1", out), source="runner", msg_id="out-1")
            replies = (await asyncio.wait_for(poll, 15))["messages"]
            assert [r["text"] for r in replies] == ["It ships today."]
            await eventually(lambda: len(calls) == 1)
            await eventually(lambda: has_at_least(events_of(js_store, "MessageSent"), 1))
    finally:
        await runner.cleanup()
    assert calls[0]["text"] == "It ships today." and calls[0]["chat"] == "support"
    [sent] = await events_of(js_store, "MessageSent")
    assert sent.channel == "http" and sent.channel_message_id == str(replies[0]["id"])


async def test_long_poll_returns_only_replies_after_the_given_id(tmp_path):
    ch = HttpChannel(HttpConfig(port=0), InboundBuffer(tmp_path / "b.db"), tmp_path / "h.db", token=None,
                     registered=always_registered())
    await ch.serve()
    try:
        first, _ = await ch.send("http:c", "one", "req-1")
        await ch.send("http:c", "two", "req-2")
        again, _ = await ch.send("http:c", "one", "req-1")  # a redelivered request is stored once
        got = await get(ch.port, "c", after=int(first))
        assert [m["text"] for m in got["messages"]] == ["two"] and again == first
    finally:
        await ch.close()


async def test_inbound_messages_are_buffered_on_disk_while_nats_is_down_and_published_in_order(nats_server, tmp_path):
    conn = await connect_nats([nats_server.url], settings(tmp_path).nats, name="gw-test")
    store = JetStreamEventStore(conn, timeout=1.0)
    from events.store.streams import ensure_streams
    await ensure_streams(conn.jetstream())
    await register(store, jid="http:c", folder="c", requires_trigger=False)
    s = http_settings(tmp_path)
    async with running(build_gateway, context(conn, store, s)) as gw:
        await eventually(lambda: http_port(gw).port is not None)
        port = http_port(gw).port
        await post(port, {"chat": "c", "sender": "a", "text": "before"})
        await eventually(lambda: has_at_least(events_of(store, "MessageReceived"), 1))
        nats_server.stop()
        for i in range(3):
            status, _ = await post(port, {"chat": "c", "sender": "a", "text": f"during {i}"})
            assert status == 202  # accepted into the on-disk buffer
        assert http_port(gw).buffer.pending() >= 1
        nats_server.start()
        await eventually(lambda: http_port(gw).buffer.pending() == 0, timeout=30)
        await eventually(lambda: has_at_least(events_of(store, "MessageReceived"), 4), timeout=30)
    await conn.close()
    texts = [m.text for m in await events_of_after_restart(nats_server)]  # (a registered chat: known while NATS is down)
    assert texts == ["before", "during 0", "during 1", "during 2"]


async def events_of_after_restart(server):
    conn = await connect_nats([server.url], NatsSettings(), name="check")
    try:
        return await events_of(JetStreamEventStore(conn), "MessageReceived")
    finally:
        await conn.close()


async def test_the_same_whatsapp_message_delivered_twice_is_stored_once(js_store, tmp_path, wire, build):
    buffer = InboundBuffer(tmp_path / "inbound.db")
    channel = WhatsAppChannel(WhatsAppConfig(enabled=True), tmp_path / "session.sqlite3", buffer, "Andy", False)
    register_handlers(wire.client, channel._on_message, channel._on_status)
    ev = build.message("@Andy hello", msg_id="3EB0DUPLICATE")
    await wire.feed(ev, ev)
    await eventually(lambda: buffer.pending() == 2)
    drain = asyncio.create_task(buffer.drain_forever(js_store))
    await eventually(lambda: buffer.pending() == 0)
    drain.cancel()
    events = await events_of(js_store, "MessageReceived")
    assert [(e.message_id, e.text, e.channel) for e in events] == [("3EB0DUPLICATE", "@Andy hello", "whatsapp")]


class FakeWhatsApp:
    """Our narrow ChannelPort, standing in for the neonize client on the outbound side."""

    name = "whatsapp"

    def __init__(self, connected=True, fail=0):
        self.connected, self.fail, self.sent = connected, fail, []

    async def send(self, chat_jid, text, request_id):
        if not self.connected:
            raise ChannelDown("offline")
        if self.fail:
            self.fail -= 1
            raise RuntimeError("server said no")
        self.sent.append((chat_jid, text))
        return f"WA{len(self.sent)}", "2026-03-01T10:00:00.000Z"

    async def set_typing(self, chat_jid, composing):
        pass


async def run_outbound(nc, store, port) -> ServiceRunner:
    deps = OutboundDeps(store, {"whatsapp": port}, "Andy", has_own_number=False)
    runner = ServiceRunner(Service("gateway", {"OutboundMessageRequested": on_outbound_requested}, deps, max_deliver=-1),
                           nc, store, FAST.model_copy(update={"retry_delays_s": [0.05]}))
    await runner.start()
    return runner


async def request(store, rid, text="hi", chat="1@g.us"):
    await append_emit(store, Emit.new(rid, OutboundMessageRequested(channel="whatsapp", chat_jid=chat, text=text)),
                      source="router", msg_id=rid)


async def test_every_outbound_request_gets_a_receipt_with_the_shared_number_prefix(js_store, nc, monkeypatch):
    monkeypatch.setattr("services.gateway.outbound.send_retry_delay", lambda attempt, **_: 0.05)
    port = FakeWhatsApp(connected=False)
    runner = await run_outbound(nc, js_store, port)
    await request(js_store, "r1", "first")
    await request(js_store, "r2", "second")
    await asyncio.sleep(0.3)
    assert port.sent == [] and await events_of(js_store, "MessageSent") == []  # held while disconnected
    port.connected = True
    await eventually(lambda: has_at_least(events_of(js_store, "MessageSent"), 2))
    await runner.stop()
    assert port.sent == [("1@g.us", "Andy: first"), ("1@g.us", "Andy: second")]
    assert [s.channel_message_id for s in await events_of(js_store, "MessageSent")] == ["WA1", "WA2"]


async def test_a_send_that_keeps_failing_ends_in_a_delivery_failed_receipt(js_store, nc, monkeypatch):
    monkeypatch.setattr("services.gateway.outbound.send_retry_delay", lambda attempt, **_: 0.01)
    port = FakeWhatsApp(fail=100)
    runner = await run_outbound(nc, js_store, port)
    await request(js_store, "r1")
    await eventually(lambda: has_at_least(events_of(js_store, "MessageDeliveryFailed"), 1), timeout=20)
    await runner.stop()
    [failed] = await events_of(js_store, "MessageDeliveryFailed")
    assert failed.attempts == MAX_SEND_ATTEMPTS and "server said no" in failed.reason and port.sent == []



async def test_typing_shows_while_a_run_is_active_in_a_whatsapp_chat(js_store, nc):
    from events.catalogue.agent import AgentRunFinished, AgentRunStarted
    from services.gateway.outbound import on_run_finished, on_run_started

    typing: list[tuple[str, bool]] = []

    class Recording(FakeWhatsApp):
        async def set_typing(self, chat_jid, composing):
            typing.append((chat_jid, composing))

    deps = OutboundDeps(js_store, {"whatsapp": Recording()}, "Andy", has_own_number=False)
    runner = ServiceRunner(Service("gateway", {"AgentRunStarted": on_run_started, "AgentRunFinished": on_run_finished}, deps),
                           nc, js_store, FAST)
    await runner.start()
    await append_emit(js_store, Emit.new("r1", AgentRunStarted(run_id="r1", chat_jid="1@g.us", group_folder="f")), source="runner", msg_id="s")
    await append_emit(js_store, Emit.append("r1", AgentRunFinished(run_id="r1", chat_jid="1@g.us", group_folder="f",
                                                                   status="succeeded")), source="runner", msg_id="f")
    await append_emit(js_store, Emit.new("r2", AgentRunStarted(run_id="r2", chat_jid="http:c", group_folder="c")), source="runner", msg_id="s2")
    await eventually(lambda: len(typing) == 2)
    await asyncio.sleep(0.2)
    await runner.stop()
    assert typing == [("1@g.us", True), ("1@g.us", False)]  # an http chat never reaches the WhatsApp port


class StrictChannel(FakeWhatsApp):
    """Encodes what it sends as UTF-8, as every real channel must (SQLite, HTTP, the WhatsApp protocol)."""

    async def send(self, chat_jid, text, request_id):
        chat_jid.encode(), text.encode()  # raises UnicodeEncodeError for a lone surrogate
        return await super().send(chat_jid, text, request_id)


async def test_a_lone_surrogate_in_a_reply_is_replaced_and_one_in_the_chat_fails_at_once_without_retries(js_store, nc,
                                                                                                        monkeypatch):
    # JSON can carry a lone surrogate ("\ud800"); no channel can encode one, and retrying cannot change that.
    monkeypatch.setattr("services.gateway.outbound.send_retry_delay", lambda attempt, **_: 0.01)
    port = StrictChannel()
    runner = await run_outbound(nc, js_store, port)
    await request(js_store, "r1", text="caf\ud800é")
    await request(js_store, "r2", chat="1\udfff@g.us")
    await eventually(lambda: has_at_least(events_of(js_store, "MessageDeliveryFailed"), 1))
    await eventually(lambda: has_at_least(events_of(js_store, "MessageSent"), 1))
    await runner.stop()
    assert port.sent == [("1@g.us", "Andy: caf\ufffdé")]
    [failed] = await events_of(js_store, "MessageDeliveryFailed")
    assert failed.attempts == 1 and "UnicodeEncodeError" in failed.reason
