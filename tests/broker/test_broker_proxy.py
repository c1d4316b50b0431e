"""The broker's model proxy on a real nats-server with StubAnthropic upstream: per-run tokens in, the real
credential out, the stream intact, usage and budgets as events and in the ``model_usage`` projection."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time

import aiohttp
import pytest
from pydantic import SecretStr
from aiohttp import web

from services.broker.service import build as build_broker
from services.harness.config import ConfigError, Credentials
from services.harness.run_token import mint
from tests.bus import context, events_of, running, settings
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually, has_at_least

KEY = "test-run-token-key-0123456789abcdef"
REAL_KEY = "sk-ant-REAL-KEY-never-in-a-sandbox"
MODEL = "claude-opus-5-5"
BODY = {"model": MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def token(run_id: str = "run-1", folder: str = "family", ttl_s: float = 3600, key: str = KEY) -> str:
    return mint(key.encode(), run_id, folder, time.time() + ttl_s)


def tampered_signature() -> str:
    prefix, claims, sig = token().split(".")
    return f"{prefix}.{claims}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}"


def creds(**overrides) -> Credentials:
    return Credentials(**{"run_token_key": KEY, "anthropic_api_key": REAL_KEY, **overrides})


@contextlib.asynccontextmanager
async def broker(nc, store, tmp_path, upstream_url: str, credentials: Credentials | None = None, **proxy):
    s = settings(tmp_path, broker={"model_proxy": {"port": 0, "upstream_url": upstream_url, **proxy}})
    async with running(build_broker, context(nc, store, s, credentials or creds())) as runner:
        await eventually(lambda: runner.service.deps.port is not None)
        yield runner.service.deps


async def call(proxy, headers: dict, body=BODY, path: str = "/v1/messages?beta=true") -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{proxy.port}{path}", data=json.dumps(body),
                          headers={"anthropic-version": "2023-06-01", "content-type": "application/json", **headers}) as r:
            return r.status, r.headers.get("content-type", ""), await r.read()


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if line)
        if lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


async def usage_rows(proxy, store) -> list[dict]:
    await proxy.readmodel.wait_for(await store.last_seq())
    return [dict(r) for r in proxy.readmodel.query("SELECT * FROM model_usage ORDER BY seq")]


async def totals(proxy, store, folder: str) -> dict:
    await proxy.readmodel.wait_for(await store.last_seq())
    [row] = proxy.readmodel.query("SELECT * FROM model_usage_totals WHERE group_folder = ?", (folder,))
    return dict(row)


async def test_the_upstream_gets_the_real_key_and_the_client_gets_the_stream_intact(js_store, nc, tmp_path):
    run_token = token()
    with StubAnthropic(steps=[("text", "Hello through the proxy")]) as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            status, ctype, raw = await call(proxy, {"x-api-key": run_token, "anthropic-beta": "claude-code-20250219"})
    assert status == 200 and ctype.startswith("text/event-stream")
    events = sse_events(raw)
    assert [e for e, _ in events] == ["message_start", "content_block_start", "content_block_delta",
                                      "content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    assert events[2][1]["delta"]["text"] == "Hello through the proxy"
    [seen] = stub.requests
    assert seen.path == "/v1/messages?beta=true" and seen.body == BODY
    assert seen.headers["x-api-key"] == REAL_KEY and "authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == "2023-06-01" and seen.headers["anthropic-beta"] == "claude-code-20250219"
    assert not any(run_token in v for v in seen.headers.values())


async def test_each_call_records_tokens_and_cost_in_the_store_and_the_projection(js_store, nc, tmp_path):
    with StubAnthropic(usage={"input_tokens": 10, "output_tokens": 7}) as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            for run in ("run-1", "run-2"):
                assert (await call(proxy, {"x-api-key": token(run)}))[0] == 200
            rows = await usage_rows(proxy, js_store)
            total = await totals(proxy, js_store, "family")
    recorded = await events_of(js_store, "ModelUsageRecorded")
    assert [(u.run_id, u.group_folder, u.model, u.status, u.input_tokens, u.output_tokens) for u in recorded] == [
        ("run-1", "family", MODEL, 200, 10, 7), ("run-2", "family", MODEL, 200, 10, 7)]
    assert [u.endpoint for u in recorded] == ["messages", "messages"]
    assert recorded[0].cost_usd == pytest.approx(0.00018)  # Opus 5.5: $4 in / $20 out per MTok
    assert [(r["run_id"], r["input_tokens"], r["output_tokens"]) for r in rows] == [("run-1", 10, 7), ("run-2", 10, 7)]
    assert (total["calls"], total["input_tokens"], total["output_tokens"], total["refused"]) == (2, 20, 14, 0)
    assert total["cost_usd"] == pytest.approx(0.00036)
    raw = b"".join([json.dumps(c.model_dump()).encode() for c in recorded])
    assert REAL_KEY.encode() not in raw and KEY.encode() not in raw


async def test_a_bearer_token_is_accepted_like_an_api_key(js_store, nc, tmp_path):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            assert (await call(proxy, {"authorization": f"Bearer {token()}"}))[0] == 200
    assert stub.requests[0].headers["x-api-key"] == REAL_KEY and "authorization" not in stub.requests[0].headers


@pytest.mark.parametrize("headers, reason", [
    ({}, "no run token"),
    ({"x-api-key": "dummy"}, "bad format"),
    ({"x-api-key": REAL_KEY}, "bad format"),
    ({"x-api-key": token(ttl_s=-1)}, "expired"),
    ({"x-api-key": token(key="a-forger-guessing-the-key-0000")}, "bad signature"),
    ({"x-api-key": tampered_signature()}, "bad signature"),
    ({"authorization": "Basic " + token()}, "no run token"),
])
async def test_a_missing_bad_expired_or_forged_token_gets_401_and_nothing_goes_upstream(js_store, nc, tmp_path,
                                                                                       headers, reason):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            status, ctype, raw = await call(proxy, headers)
    assert status == 401 and ctype.startswith("application/json")
    error = json.loads(raw)
    assert error["type"] == "error" and error["error"]["type"] == "authentication_error"
    assert reason in error["error"]["message"]
    assert stub.requests == [] and await js_store.last_seq() == 0


async def test_when_the_budget_is_spent_the_next_call_is_refused_with_a_clear_error(js_store, nc, tmp_path):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url, budgets_usd={"family": 0.0001}) as proxy:
            assert (await call(proxy, {"x-api-key": token("run-1")}))[0] == 200  # $0 spent < $0.0001
            status, _, raw = await call(proxy, {"x-api-key": token("run-2")})
            other, _, _ = await call(proxy, {"x-api-key": token("run-3", folder="main")})  # no budget: no limit
            total = await totals(proxy, js_store, "family")
    assert status == 402 and other == 200
    error = json.loads(raw)["error"]
    assert error == {"type": "billing_error", "message": "budget of $0.0001 for group family is spent ($0.00018 used)"}
    assert len(stub.message_requests) == 2  # the refused call never reached the upstream
    [refused] = await events_of(js_store, "ModelRequestRefused")
    assert (refused.run_id, refused.group_folder, refused.budget_usd) == ("run-2", "family", 0.0001)
    assert refused.spent_usd == pytest.approx(0.00018) and refused.reason == error["message"]
    assert (total["calls"], total["refused"]) == (1, 1)


async def test_without_a_claude_credential_calls_get_a_403_the_cli_does_not_retry_naming_the_keys_recorded_once_per_run(
        js_store, nc, tmp_path):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url, Credentials(run_token_key=KEY)) as proxy:
            first = await call(proxy, {"x-api-key": token()})
            again = await call(proxy, {"x-api-key": token()})
            await call(proxy, {"x-api-key": token("run-2")})
    for status, _, raw in (first, again):
        message = json.loads(raw)["error"]["message"]
        assert status == 403 and "anthropic_api_key" in message and "claude_code_oauth_token" in message
        assert "credentials.yml" in message
    assert stub.requests == []
    failed = await events_of(js_store, "ModelCredentialFailed")
    assert [(f.run_id, f.group_folder, f.problem, f.status) for f in failed] == [
        ("run-1", "family", "missing", 0), ("run-2", "family", "missing", 0)]


@pytest.mark.parametrize("status", [401, 403])
async def test_an_upstream_401_or_403_is_credential_rejected_not_retryable_and_recorded_without_the_key(
        js_store, nc, tmp_path, status):
    kind = "authentication_error" if status == 401 else "permission_error"
    with StubAnthropic(steps=[("error", status, kind, "invalid x-api-key")]) as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            got, _, raw = await call(proxy, {"x-api-key": token("run-9")})
            await eventually(lambda: has_at_least(events_of(js_store, "ModelUsageRecorded"), 1))
    error = json.loads(raw)["error"]
    assert got == 403 and error["type"] == "permission_error" and "credential rejected" in error["message"]
    assert f"HTTP {status}" in error["message"] and REAL_KEY not in raw.decode()
    [failed] = await events_of(js_store, "ModelCredentialFailed")
    assert (failed.run_id, failed.group_folder, failed.problem, failed.status) == ("run-9", "family", "rejected", status)
    [usage] = await events_of(js_store, "ModelUsageRecorded")
    assert (usage.status, usage.input_tokens, usage.cost_usd) == (status, 0, 0.0)
    assert len(stub.message_requests) == 1


async def test_with_only_an_oauth_token_it_is_sent_as_bearer_with_the_oauth_beta(js_store, nc, tmp_path):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url,
                          Credentials(run_token_key=KEY, claude_code_oauth_token="sk-ant-oat01-REAL")) as proxy:
            assert (await call(proxy, {"x-api-key": token(), "anthropic-beta": "claude-code-20250219,effort-2025-11-24"}))[0] == 200
    seen = stub.requests[0].headers
    assert seen["authorization"] == "Bearer sk-ant-oat01-REAL" and "x-api-key" not in seen
    assert seen["anthropic-beta"] == "claude-code-20250219,effort-2025-11-24,oauth-2025-04-20"


async def test_count_tokens_passes_through_unbilled_and_is_recorded_as_a_free_call(js_store, nc, tmp_path):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url, budgets_usd={"family": 0}) as proxy:
            status, _, raw = await call(proxy, {"x-api-key": token()}, path="/v1/messages/count_tokens?beta=true")
            messages, _, _ = await call(proxy, {"x-api-key": token()})  # a zero budget refuses Messages calls only
            total = await totals(proxy, js_store, "family")
    assert (status, json.loads(raw)) == (200, {"input_tokens": 42}) and messages == 402
    [seen] = stub.requests
    assert seen.path == "/v1/messages/count_tokens?beta=true" and seen.headers["x-api-key"] == REAL_KEY
    [u] = await events_of(js_store, "ModelUsageRecorded")
    assert (u.endpoint, u.run_id, u.group_folder, u.model, u.status) == ("count_tokens", "run-1", "family", MODEL, 200)
    # The 42 is the count asked for, not tokens used: nothing is charged, so the spend stays 0.
    assert (u.input_tokens, u.output_tokens, u.cost_usd) == (0, 0, 0.0)
    assert (total["input_tokens"], total["cost_usd"], total["refused"]) == (0, 0.0, 1)


@contextlib.asynccontextmanager
async def upstream(handler):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_the_stream_is_passed_on_as_it_arrives_not_buffered(js_store, nc, tmp_path):
    """The upstream holds the rest of the stream until the client has seen the first event."""
    client_saw_start = asyncio.Event()

    async def gated(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        start = {"type": "message_start", "message": {"id": "msg_g", "model": MODEL, "usage": {"input_tokens": 5}}}
        await resp.write(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
        await client_saw_start.wait()
        delta = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 3}}
        await resp.write(f"event: message_delta\ndata: {json.dumps(delta)}\n\n".encode())
        await resp.write_eof()
        return resp

    async with upstream(gated) as url, broker(nc, js_store, tmp_path, url) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{proxy.port}/v1/messages", json=BODY,
                              headers={"x-api-key": token()}) as r:
                first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 20)  # a bound, not a speed claim
                client_saw_start.set()
                rest = await r.read()
    assert first.startswith(b"event: message_start") and rest.startswith(b"event: message_delta")
    [u] = await events_of(js_store, "ModelUsageRecorded")
    assert (u.input_tokens, u.output_tokens, u.model) == (5, 3, MODEL)


async def test_a_client_that_hangs_up_mid_stream_is_still_charged_for_what_was_generated(js_store, nc, tmp_path):
    client_gone = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        start = {"type": "message_start", "message": {"id": "msg_h", "model": MODEL,
                                                      "usage": {"input_tokens": 500, "output_tokens": 1}}}
        await resp.write(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
        await client_gone.wait()
        for _ in range(1000):  # keep producing until the proxy stops reading
            await resp.write(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
            await asyncio.sleep(0.01)
        return resp

    async with upstream(endless) as url, broker(nc, js_store, tmp_path, url) as proxy:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{proxy.port}/v1/messages", json=BODY,
                              headers={"x-api-key": token()}) as r:
                await r.content.readuntil(b"\n\n")
        client_gone.set()
        await eventually(lambda: has_at_least(events_of(js_store, "ModelUsageRecorded"), 1), timeout=20)
    [u] = await events_of(js_store, "ModelUsageRecorded")
    assert (u.input_tokens, u.output_tokens, u.status) == (500, 1, 200)


async def test_a_compressed_json_reply_is_passed_on_decoded_and_metered(js_store, nc, tmp_path):
    reply = {"id": "msg_j", "type": "message", "model": "claude-haiku-4-5", "content": [{"type": "text", "text": "hi"}],
             "usage": {"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 3000}}

    async def compressed(request: web.Request) -> web.Response:
        assert "gzip" in request.headers["accept-encoding"]
        return web.Response(body=gzip.compress(json.dumps(reply).encode()),
                            headers={"content-type": "application/json", "content-encoding": "gzip"})

    async with upstream(compressed) as url, broker(nc, js_store, tmp_path, url) as proxy:
        status, _, raw = await call(proxy, {"x-api-key": token(), "accept-encoding": "br, zstd"},
                                    body={**BODY, "stream": False})
    assert status == 200 and json.loads(raw) == reply
    [u] = await events_of(js_store, "ModelUsageRecorded")
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens) == (1000, 200, 3000)
    assert u.cost_usd == pytest.approx((1000 * 1 + 200 * 5 + 3000 * 0.10) / 1e6)  # Haiku 4.5


async def test_an_upstream_error_is_passed_on_and_recorded_with_the_requested_model(js_store, nc, tmp_path):
    async def overloaded(request: web.Request) -> web.Response:
        return web.json_response({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, status=529)

    async with upstream(overloaded) as url, broker(nc, js_store, tmp_path, url) as proxy:
        status, _, raw = await call(proxy, {"x-api-key": token()})
    assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"
    [u] = await events_of(js_store, "ModelUsageRecorded")
    assert (u.status, u.model, u.input_tokens, u.cost_usd) == (529, MODEL, 0, 0.0)


async def test_an_unreachable_upstream_gets_502(js_store, nc, tmp_path):
    async def nothing(request: web.Request) -> web.Response:
        return web.Response()

    async with upstream(nothing) as url:
        pass  # the port is free again: nothing listens there
    async with broker(nc, js_store, tmp_path, url, request_timeout_s=5) as proxy:
        status, _, raw = await call(proxy, {"x-api-key": token()})
    assert status == 502 and json.loads(raw)["error"]["type"] == "api_error"


@pytest.mark.parametrize("key, match", [(None, "run_token_key is not set"), ("short", "shorter than 16 bytes")])
def test_the_broker_does_not_build_without_a_usable_run_token_key(tmp_path, key, match):
    # Credentials refuse a short key when loaded (tests/harness/test_config.py); the broker still checks what it gets.
    creds = Credentials(anthropic_api_key=REAL_KEY).model_copy(update={"run_token_key": SecretStr(key) if key else None})
    ctx = context(None, None, settings(tmp_path), creds)
    with pytest.raises(ConfigError, match=match):
        build_broker(ctx)


def test_an_unknown_broker_setting_is_refused(tmp_path):
    from pydantic import ValidationError

    ctx = context(None, None, settings(tmp_path, broker={"model_proxy": {"prot": 1}}), creds())
    with pytest.raises(ValidationError, match="prot"):
        build_broker(ctx)


# ---- only the agent's endpoints are forwarded (issue 20) ---------------------------------------------------
ALLOWED = "POST /v1/messages and POST /v1/messages/count_tokens"


async def raw_call(port: int, method: str, target: str, headers: dict, body: bytes = b"{}") -> tuple[int, dict, bytes]:
    """One request with ``target`` sent byte for byte (an HTTP client would normalise ``..`` or ``//``):
    status, headers (lower-cased names) and body of the answer (as framed on the wire)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"host": "proxy", "content-type": "application/json",
                                                "content-length": str(len(body)), "connection": "close",
                                                **headers}.items())
    writer.write(f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode() + body)
    await writer.drain()
    async with asyncio.timeout(20):  # a bound, not a speed claim
        answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    raw_headers, _, payload = rest.partition(b"\r\n\r\n")
    fields = dict(line.split(": ", 1) for line in raw_headers.decode().split("\r\n") if line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, payload


async def refusals(store) -> list:
    return await events_of(store, "SandboxRequestRefused")


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/messages/batches"),
    ("POST", "/v1/files"),
    ("GET", "/v1/messages/batches/msgbatch_01/results"),
    ("GET", "/v1/models"),
    ("HEAD", "/api/hello"),
    ("GET", "/v1/messages"),
])
async def test_an_endpoint_the_agent_does_not_use_is_refused_with_a_valid_token_recorded_and_never_sent_upstream(
        js_store, nc, tmp_path, method, path):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            status, headers, body = await raw_call(proxy.port, method, f"{path}?beta=true",
                                                   {"x-api-key": token("run-7", "family")})
    assert status == 403 and headers["content-type"].startswith("application/json")
    assert headers["x-should-retry"] == "false"  # and 403 is not among the statuses the Anthropic SDKs retry
    if method != "HEAD":
        assert json.loads(body) == {"type": "error", "error": {"type": "permission_error", "message":
                         f"the model proxy forwards only {ALLOWED}; it refused {method} {path}"}}
    assert stub.seen == []
    [refused] = await refusals(js_store)
    assert (refused.service, refused.surface, refused.group_folder, refused.run_id) == (
        "broker", "model_proxy", "family", "run-7")
    assert refused.operation == f"{method} {path}" and ALLOWED in refused.reason
    assert await events_of(js_store, "ModelUsageRecorded") == []  # nothing was forwarded, so nothing to meter


async def test_path_tricks_around_the_allowlist_are_refused_and_the_exact_paths_pass(js_store, nc, tmp_path):
    tricks = ["/v1/messages/../files", "//v1/files", "/v1/messages%2F..%2Ffiles", "/v1/messages%2fbatches",
              "/v1/messages/", "/v1/./messages", "/V1/MESSAGES", "/v1/messages/count_tokens/../batches",
              "/v1/messages;batches", "/v1/messages#x", "http://127.0.0.1/v1/messages", "/v1/messages?a=1#/../files"]
    key = {"x-api-key": token()}
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url, refusals_recorded_per_minute=100) as proxy:
            answers = {t: (await raw_call(proxy.port, "POST", t, key))[0] for t in tricks}
            star = (await raw_call(proxy.port, "OPTIONS", "*", key))[0]
            assert stub.seen == []
            exact = [(await raw_call(proxy.port, "POST", t, key, json.dumps(BODY).encode()))[0]
                     for t in ("/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens?beta=true")]
    assert answers == {t: 403 for t in tricks} and star == 403
    assert exact == [200, 200, 200]
    assert stub.seen == [("POST", "/v1/messages"), ("POST", "/v1/messages?beta=true"),
                         ("POST", "/v1/messages/count_tokens?beta=true")]
    assert [r.operation for r in await refusals(js_store)] == [
        *[f"POST {t}" for t in tricks[:9]], "POST /v1/messages#…", "POST http://127.0.0.1/v1/messages",
        "POST /v1/messages#…", "OPTIONS *"]


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "dummy"}, {"x-api-key": token(ttl_s=-1)}])
async def test_without_a_valid_token_a_refused_endpoint_is_a_401_that_records_nothing(js_store, nc, tmp_path, headers):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            status, _, body = await raw_call(proxy.port, "POST", "/v1/files", headers)
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"
    assert stub.seen == [] and await js_store.last_seq() == 0  # nobody without a token can write to the log


async def test_a_run_that_keeps_asking_is_refused_every_time_but_recorded_only_up_to_its_rate(js_store, nc, tmp_path):
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url, refusals_recorded_per_minute=3) as proxy:
            flood = [(await raw_call(proxy.port, "POST", "/v1/files", {"x-api-key": token("run-1")}))[0]
                     for _ in range(8)]
            other = (await raw_call(proxy.port, "POST", "/v1/files", {"x-api-key": token("run-2")}))[0]
            messages, _, _ = await call(proxy, {"x-api-key": token("run-1")})
    assert flood == [403] * 8 and other == 403 and messages == 200  # the run itself is not blocked
    # One more record every 20 s at 3 per minute: the 8 requests take far less, so 3 are recorded.
    assert [r.run_id for r in await refusals(js_store)] == ["run-1"] * 3 + ["run-2"]
    assert [(m, p.partition("?")[0]) for m, p in stub.seen] == [("POST", "/v1/messages")]
