"""The webhook fuzzed through real HTTP: a real gateway on a real nats-server, hypothesis-generated requests of
any body, content type, size, method and path. Every answer is a documented status with a JSON body
(202 ``{"id", "chat"}`` or a 4xx ``{"error", "field"}``), never a 5xx; a refused request stores nothing: after
the run, the log holds exactly the accepted messages (checked behind a final barrier message), the buffer is
empty, and only accepted requests left a callback behind.

Hypothesis runs in a worker thread with blocking HTTP (http.client), so the gateway keeps serving on the test's
event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from dataclasses import dataclass, field
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings, strategies as st

from services.gateway.service import build as build_gateway
from tests.bus import context, events_of, running
from tests.gateway.test_gateway_service import http_port, http_settings
from tests.router.test_router_service import register
from tests.support import eventually

MAX_TEXT = 2_000
MAX_BODY = MAX_TEXT + 4096
REGISTERED = ["support", "café", "支持"]
ERROR_STATUSES = {400, 404, 405, 413, 415, 422}
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/problem+json"]
OTHER_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
               "application/jsonx", "json", ""]

anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                        max_leaves=8)
chat = st.sampled_from(REGISTERED) | st.sampled_from(["nobody", "a b", "", "x" * 201, "é\u0301"]) | st.text(max_size=12)
text_value = st.text(min_size=1, max_size=60) | st.text(alphabet="x", min_size=MAX_TEXT - 2, max_size=MAX_TEXT + 2)


@st.composite
def message(draw) -> dict:
    """A body near the schema: each field present or not, of the right type or not, plus unknown fields."""
    body = {}
    for name, good in (("chat", chat), ("sender", st.text(min_size=1, max_size=20)), ("text", text_value),
                       ("reply_to", st.none() | st.text(max_size=20)),
                       ("callback_url", st.none() | st.sampled_from(["http://127.0.0.1:9/hook", "ftp://x", "hook"]))):
        kind = draw(st.sampled_from(["good", "good", "good", "absent", "wrong"]))
        if kind == "good":
            body[name] = draw(good)
        elif kind == "wrong":
            body[name] = draw(anything)
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(min_size=1, max_size=8))] = draw(anything)
    return body


def encode(body: dict, how: str) -> bytes:
    data = json.dumps(body, ensure_ascii=how == "ascii").encode("utf-8", "surrogatepass")
    if how == "latin1":  # a client that encodes the right JSON with the wrong charset
        return json.dumps(body, ensure_ascii=False).encode("latin-1", "replace")
    return data


@st.composite
def body_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["message", "message", "message", "raw", "json", "bad-utf8", "surrogate", "deep", "big"]))
    if kind == "surrogate":  # valid JSON, not valid Unicode: a lone UTF-16 surrogate escape in some field
        where = draw(st.sampled_from(["chat", "sender", "text", "reply_to", "x"]))
        body = {"chat": "support", "sender": "a", "text": "t", where: "a" + draw(st.sampled_from(["\\ud800", "\\udfff"]))}
        return json.dumps(body).replace("\\\\", "\\").encode()
    if kind == "message":
        return encode(draw(message()), draw(st.sampled_from(["ascii", "utf8", "latin1"])))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(anything)).encode()
    if kind == "bad-utf8":
        good = encode(draw(message()), "utf8")
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + good[at:]
    if kind == "deep":
        depth = draw(st.integers(500, 3000))
        return b'{"chat": ' + b"[" * depth + b"]" * depth + b"}"
    return b'{"chat": "support", "sender": "a", "text": "' + b"y" * draw(st.integers(MAX_BODY - 50, MAX_BODY + 500)) + b'"}'


@st.composite
def request(draw) -> tuple[str, str, dict[str, str], bytes]:
    kind = draw(st.sampled_from(["valid"] * 3 + ["post"] * 6 + ["get", "other"]))
    if kind == "valid":  # the happy path, so accepted and refused requests interleave
        body = {"chat": draw(st.sampled_from(REGISTERED)), "sender": draw(st.text(min_size=1, max_size=20)),
                "text": draw(st.text(min_size=1, max_size=80))}
        if draw(st.booleans()):
            body["callback_url"] = "http://127.0.0.1:9/hook"
        return "POST", "/v1/messages", {"Content-Type": draw(st.sampled_from(JSON_TYPES))}, encode(body, "utf8")
    if kind == "get":
        query = draw(st.sampled_from(["", "?after=0&wait=0", "?after=x", "?after=-1", "?wait=nan", "?wait=0.01",
                                      "?after=99999999999999999999999", "?wait=1e999"]))
        target = draw(st.sampled_from(REGISTERED + ["nobody", "a%20b", "%FF", "..%2F"]))
        return "GET", f"/v1/chats/{quote(target, safe='%')}/messages{query}", {}, b""
    if kind == "other":
        return (draw(st.sampled_from(["PUT", "DELETE", "PATCH", "GET"])), draw(st.sampled_from(["/v1/messages", "/", "/v2/x"])),
                {}, b"")
    ctype = draw(st.sampled_from(JSON_TYPES * 6 + OTHER_TYPES + [None]))
    # (No Content-Encoding here: a body that does not decode may be refused by aiohttp's protocol parser before
    # the app runs, in plain text, as documented in services/gateway/http_errors.py; the app's own answer to one
    # that reaches it is tested in tests/gateway/test_webhook_errors.py.)
    return "POST", "/v1/messages", ({} if ctype is None else {"Content-Type": ctype}), draw(body_bytes())


@dataclass
class Ledger:
    accepted: list[str] = field(default_factory=list)
    callbacks: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)


def send(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers.get_content_type(), resp.read()
    finally:
        conn.close()


def check(ledger: Ledger, method: str, path: str, headers: dict[str, str], body: bytes,
          status: int, ctype: str, raw: bytes) -> None:
    ledger.statuses[status] = ledger.statuses.get(status, 0) + 1
    assert status < 500, (status, raw, method, path, headers, body[:200])
    assert ctype == "application/json", (status, ctype, raw)
    answer = json.loads(raw)
    declared = headers.get("Content-Type", "").split(";")[0].strip()
    if method == "POST" and path == "/v1/messages":
        if declared != "application/json" and not (declared.startswith("application/") and declared.endswith("+json")):
            assert (status, answer["field"]) == (415, "Content-Type"), answer
        elif len(body) > MAX_BODY:
            assert status == 413 and answer["field"] is None, answer
    if status == 202:
        assert set(answer) == {"id", "chat"} and answer["chat"] in REGISTERED, answer
        ledger.accepted.append(answer["id"])
        sent = json.loads(body)
        if sent.get("callback_url"):
            ledger.callbacks.add(sent["chat"])
    elif status != 200:
        assert status in ERROR_STATUSES, (status, answer)
        assert set(answer) == {"error", "field"} and isinstance(answer["error"], str) and answer["error"], answer
        assert answer["field"] is None or isinstance(answer["field"], str), answer
    else:
        assert method == "GET" and isinstance(answer["messages"], list), answer


async def test_any_request_gets_a_documented_json_answer_and_a_refused_one_stores_nothing(js_store, nc, tmp_path):
    for i, name in enumerate(REGISTERED):
        await register(js_store, jid=f"http:{name}", folder=f"g{i}", requires_trigger=False)
    ledger = Ledger()
    s = http_settings(tmp_path, max_text_bytes=MAX_TEXT, max_wait_s=0.05)
    async with running(build_gateway, context(nc, js_store, s)) as gw:
        await eventually(lambda: http_port(gw).port is not None)
        port = http_port(gw).port

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(req=request())
        def fuzz(req) -> None:
            method, path, headers, body = req
            check(ledger, method, path, headers, body, *send(port, method, path, headers, body))

        await asyncio.to_thread(fuzz)
        # The barrier: the buffer publishes in order, so once this message is in the log every earlier one is.
        status, _, raw = await asyncio.to_thread(send, port, "POST", "/v1/messages", {"Content-Type": "application/json"},
                                                 b'{"chat": "support", "sender": "z", "text": "barrier"}')
        assert status == 202
        barrier = json.loads(raw)["id"]
        await eventually(lambda: _stored_ids_include(js_store, barrier), timeout=30)
        assert http_port(gw).buffer.pending() == 0
        stored_callbacks = {row[0] for row in http_port(gw).db.execute("SELECT chat FROM callbacks")}
    stored = [m.message_id for m in await events_of(js_store, "MessageReceived")]
    assert sorted(stored) == sorted([*ledger.accepted, barrier])
    assert stored_callbacks == ledger.callbacks
    print("webhook fuzz answers:", dict(sorted(ledger.statuses.items())))
    assert {202, 400, 404, 405, 413, 415, 422} <= set(ledger.statuses), ledger.statuses  # the fuzz reached every answer


async def _stored_ids_include(store, message_id: str) -> bool:
    return message_id in [m.message_id for m in await events_of(store, "MessageReceived")]
