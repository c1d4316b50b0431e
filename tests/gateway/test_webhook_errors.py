"""The webhook's error contract on a real gateway and nats-server: every error is JSON ``{"error", "field"}`` with
the right 4xx, and a refused request stores nothing (checked against a good request sent after it: a barrier)."""

from __future__ import annotations

import contextlib
import unicodedata

import aiohttp
import pytest

from services.gateway.service import build as build_gateway
from services.router.groups import GroupError, RegisteredGroup
from tests.bus import context, events_of, running
from tests.gateway.test_gateway_service import JSON, get, http_port, http_settings, post
from tests.router.test_router_service import register
from tests.support import eventually, has_at_least


@contextlib.asynccontextmanager
async def gateway(nc, js_store, tmp_path, *chats: str, **http):
    for chat in chats:
        await register(js_store, jid=f"http:{chat}", folder=f"f{abs(hash(chat))}", requires_trigger=False)
    async with running(build_gateway, context(nc, js_store, http_settings(tmp_path, **http))) as gw:
        await eventually(lambda: http_port(gw).port is not None)
        yield gw


async def raw_post(port: int, data: bytes, headers: dict[str, str] | None = None, path: str = "/v1/messages",
                   method: str = "POST") -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {}) as r:
            return r.status, r.content_type, await r.json(content_type=None)


async def only_the_barrier_was_stored(js_store, port: int, chat: str = "support") -> None:
    """Post one good message and wait for it: then the log's MessageReceived events must be exactly that one."""
    status, ok = await post(port, {"chat": chat, "sender": "ann", "text": "barrier"})
    assert status == 202
    await eventually(lambda: has_at_least(events_of(js_store, "MessageReceived"), 1))
    assert [m.message_id for m in await events_of(js_store, "MessageReceived")] == [ok["id"]]


async def test_a_body_over_the_size_limit_gets_413_as_json_and_stores_nothing(js_store, nc, tmp_path):
    async with gateway(nc, js_store, tmp_path, "support", max_text_bytes=100) as gw:
        port = http_port(gw).port
        big = b'{"chat": "support", "sender": "ann", "text": "' + b"x" * 10_000 + b'"}'
        got = await raw_post(port, big, JSON)
        assert got == (413, "application/json", {"error": f"body larger than {100 + 4096} bytes", "field": None})
        await only_the_barrier_was_stored(js_store, port)


async def test_a_message_to_a_chat_that_is_not_registered_gets_404_naming_the_chat_and_stores_nothing(js_store, nc, tmp_path):
    async with gateway(nc, js_store, tmp_path, "support") as gw:
        port = http_port(gw).port
        status, err = await post(port, {"chat": "nobody", "sender": "ann", "text": "hi", "callback_url": "http://x/hook"})
        assert (status, err["field"]) == (404, "chat") and "'nobody' is not registered" in err["error"]
        assert "nanoclaw groups add http:nobody" in err["error"]
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/v1/chats/nobody/messages") as r:
                assert (r.status, (await r.json())["field"]) == (404, "chat")
        await only_the_barrier_was_stored(js_store, port)
        assert http_port(gw).db.execute("SELECT chat FROM callbacks").fetchall() == []  # nor its callback


async def test_a_chat_registered_just_before_its_first_message_is_accepted(js_store, nc, tmp_path):
    async with gateway(nc, js_store, tmp_path) as gw:
        await register(js_store, jid="http:fresh", folder="fresh", requires_trigger=False)
        status, _ = await post(http_port(gw).port, {"chat": "fresh", "sender": "ann", "text": "first"})
    assert status == 202


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
                                     {"Content-Type": "multipart/form-data; boundary=x"}])
async def test_a_body_that_is_not_declared_json_gets_415_naming_the_content_type(js_store, nc, tmp_path, headers):
    async with gateway(nc, js_store, tmp_path, "support") as gw:
        port = http_port(gw).port
        status, kind, err = await raw_post(port, b'{"chat": "support", "sender": "ann", "text": "hi"}', headers)
        assert (status, kind, err["field"]) == (415, "application/json", "Content-Type")
        assert "application/json" in err["error"]
        await only_the_barrier_was_stored(js_store, port)


async def test_json_with_a_charset_or_a_json_suffix_type_is_accepted(js_store, nc, tmp_path):
    async with gateway(nc, js_store, tmp_path, "support") as gw:
        for ctype in ("application/json; charset=utf-8", "application/vnd.api+json"):
            status, _, _ = await raw_post(http_port(gw).port, b'{"chat": "support", "sender": "a", "text": "hi"}',
                                          {"Content-Type": ctype})
            assert status == 202


@pytest.mark.parametrize("data, field", [
    (b'{"chat": "support", "sender": "ann", "text": "caf\xe9"}', "text"),  # Latin-1 where UTF-8 is due
    (b'{"chat": "support", "sender": "\xff\xfe", "text": "hi"}', "sender"),
    (b'\xff{"chat": "support"}', None),  # outside any string: the body as a whole
])
async def test_invalid_utf8_is_reported_as_such_naming_the_field_that_holds_it(js_store, nc, tmp_path, data, field):
    async with gateway(nc, js_store, tmp_path, "support") as gw:
        port = http_port(gw).port
        status, _, err = await raw_post(port, data, JSON)
        assert (status, err["field"]) == (400, field) and "not valid UTF-8" in err["error"]
        await only_the_barrier_was_stored(js_store, port)


async def test_an_unpaired_surrogate_escape_is_refused_naming_the_field(js_store, nc, tmp_path):
    async with gateway(nc, js_store, tmp_path, "support") as gw:
        port = http_port(gw).port
        status, _, err = await raw_post(port, b'{"chat": "support", "sender": "ann", "text": "a\\ud800b"}', JSON)
        assert (status, err["field"]) == (400, "text") and "surrogate" in err["error"]
        await only_the_barrier_was_stored(js_store, port)


async def test_a_body_whose_content_encoding_does_not_decode_gets_400_as_json(js_store, nc, tmp_path):
    async with gateway(nc, js_store, tmp_path, "support") as gw:
        port = http_port(gw).port
        status, kind, err = await raw_post(port, b"not gzip at all", {**JSON, "Content-Encoding": "gzip"})
        assert (status, kind, err["field"]) == (400, "application/json", None) and "could not be read" in err["error"]
        await only_the_barrier_was_stored(js_store, port)


async def test_unknown_routes_and_methods_answer_in_the_same_json_shape(js_store, nc, tmp_path):
    async with gateway(nc, js_store, tmp_path) as gw:
        port = http_port(gw).port
        assert await raw_post(port, b"", path="/nope") == (404, "application/json", {"error": "not found", "field": None})
        status, kind, err = await raw_post(port, b"", method="PUT")
        assert (status, kind, err) == (405, "application/json", {"error": "method not allowed", "field": None})


@pytest.mark.parametrize("query, field", [("after=x", "after"), ("after=-1", "after"), ("after=99999999999999999999", "after"),
                                          ("wait=soon", "wait"), ("wait=nan", "wait"), ("wait=-3", "wait")])
async def test_bad_long_poll_parameters_get_400_naming_the_parameter(js_store, nc, tmp_path, query, field):
    async with gateway(nc, js_store, tmp_path, "support") as gw:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{http_port(gw).port}/v1/chats/support/messages?{query}") as r:
                assert (r.status, (await r.json())["field"]) == (400, field)


CHATS = ["café", "поддержка", "支持", "support_2", "a.b+c@d:e-f"]


async def test_chat_ids_with_letters_of_any_script_are_registered_written_to_and_read(js_store, nc, tmp_path):
    async with gateway(nc, js_store, tmp_path, *CHATS) as gw:
        port = http_port(gw).port
        for chat in CHATS:
            status, body = await post(port, {"chat": chat, "sender": "ann", "text": f"hello {chat}"})
            assert (status, body["chat"]) == (202, chat)
            await http_port(gw).send(f"http:{chat}", f"reply to {chat}", f"req-{chat}")
            assert [m["text"] for m in (await get(port, chat))["messages"]] == [f"reply to {chat}"]
        await eventually(lambda: has_at_least(events_of(js_store, "MessageReceived"), len(CHATS)))
    assert sorted(m.chat_jid for m in await events_of(js_store, "MessageReceived")) == sorted(f"http:{c}" for c in CHATS)


@pytest.mark.parametrize("chat", ["a b", "a/b", "tab\t", unicodedata.normalize("NFD", "café"), "x" * 201, ""])
async def test_a_chat_id_the_webhook_refuses_cannot_be_registered_either(js_store, nc, tmp_path, chat):
    with pytest.raises(GroupError, match="http:"):
        RegisteredGroup.register(jid=f"http:{chat}", name="N", folder="n", trigger="@Andy", requires_trigger=False,
                                 is_main=False, channel="http", container_config=None, added_at="2026-01-01T00:00:00.000Z")
    async with gateway(nc, js_store, tmp_path) as gw:
        status, err = await post(http_port(gw).port, {"chat": chat, "sender": "ann", "text": "hi"})
    assert (status, err["field"]) == (422, "chat")
