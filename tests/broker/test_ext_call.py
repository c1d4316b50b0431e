"""``ext_call`` end to end: a real NATS request on ``nc.ipc.<folder>.ext_call`` to the broker service on a real
nats-server, calling a local stub provider. Identity from the subject, capability at call time with the
service's clock, idempotency, the in-flight lock, backpressure, signatures, and no parameter in clear."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest

from events.repository import Repository
from services.broker.ext import build_ext
from services.broker.ext.calls import ExtCall
from services.broker.ext.config import ExtConfig
from services.broker.service import build as build_broker
from services.harness.config import ConfigError
from services.harness.service import Request
from tests.broker.ext_stub import ExtStub, expected_signature
from tests.broker.ext_support import (GH_TOKEN, MASTER, WEB_TOKEN, change, creds, ext_broker, ext_call, ext_of,
                                      grant, providers)
from tests.bus import context, events_of, settings
from tests.clock import T0, FakeClock
from tests.support import eventually

ISSUES = {"provider": "github", "method": "GET", "path": "/repos/octo/shop/issues", "query": {"state": "open"}}


async def test_a_granted_read_goes_out_with_the_token_and_a_signature_the_provider_verifies(js_store, nc, tmp_path):
    await grant(js_store, "family", "github", 1)
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        reply = await ext_call(nc, "family", idempotency_key="k1", **ISSUES)
    assert reply["ok"], reply
    result = reply["result"]
    assert (result["status"], result["level"], result["replayed"], result["truncated"]) == (200, 1, False, False)
    assert result["body"] == {"method": "GET", "path": "/repos/octo/shop/issues?state=open", "body": None}
    [seen] = stub.requests
    assert seen.headers["Authorization"] == f"Bearer {GH_TOKEN}"
    assert seen.headers["Accept"] == "application/vnd.github+json" and "X-GitHub-Api-Version" in seen.headers
    assert seen.headers["X-Nanoclaw-Signature"] == expected_signature(MASTER.encode(), seen)
    assert f"t={int(T0.timestamp())},g=family," in seen.headers["X-Nanoclaw-Signature"]
    [started] = await events_of(js_store, "ExtCallStarted")
    [finished] = await events_of(js_store, "ExtCallFinished")
    assert (started.group_folder, started.provider, started.level, started.method, started.host) == (
        "family", "github", 1, "GET", stub.host)
    assert (finished.status, finished.outcome, finished.params_hash) == (200, "ok", started.params_hash)


async def test_a_signature_made_for_one_group_does_not_verify_as_another(js_store, nc, tmp_path):
    await grant(js_store, "family", "github", 1)
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        assert (await ext_call(nc, "family", idempotency_key="k1", **ISSUES))["ok"]
    [seen] = stub.requests
    forged = dict(seen.headers, **{"X-Nanoclaw-Signature": seen.headers["X-Nanoclaw-Signature"].replace(
        "g=family", "g=work")})
    assert expected_signature(MASTER.encode(), seen) == seen.headers["X-Nanoclaw-Signature"]
    assert expected_signature(MASTER.encode(), type(seen)(**{**seen.__dict__, "headers": forged})) != \
        forged["X-Nanoclaw-Signature"]


async def test_identity_is_the_subject_folder_never_the_payload(js_store, nc, tmp_path):
    await grant(js_store, "main", "github", 2)
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        spoofed = await ext_call(nc, "family", idempotency_key="k1", group_folder="main", folder="main", **ISSUES)
        own = await ext_call(nc, "main", idempotency_key="k1", **ISSUES)
    assert not spoofed["ok"] and "refused (insufficient)" in spoofed["error"] and "group family" in spoofed["error"]
    assert own["ok"], own
    [seen] = stub.requests
    assert ",g=main," in seen.headers["X-Nanoclaw-Signature"]
    [refused] = await events_of(js_store, "ExtCallRefused")
    assert (refused.group_folder, refused.decision, refused.level_required, refused.level_held) == (
        "family", "insufficient", 1, 0)


async def test_a_repeated_key_returns_the_first_result_and_calls_out_once_even_after_a_restart(js_store, nc, tmp_path):
    await grant(js_store, "family", "github", 2)
    create = {"provider": "github", "method": "POST", "path": "/repos/octo/shop/issues", "body": {"title": "Bug"}}
    async with ExtStub(status=201) as stub:
        async with ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
            first = await ext_call(nc, "family", idempotency_key="issue-1", **create)
            again = await ext_call(nc, "family", idempotency_key="issue-1", **create)
        async with ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
            after_restart = await ext_call(nc, "family", idempotency_key="issue-1", **create)
    assert first["ok"] and first["result"]["status"] == 201 and first["result"]["replayed"] is False
    for repeat in (again, after_restart):
        assert repeat["ok"] and repeat["result"] == {**first["result"], "replayed": True}
    assert len(stub.requests) == 1
    assert len(await events_of(js_store, "ExtCallStarted")) == 1


async def test_a_key_reused_for_other_parameters_is_refused_and_nothing_goes_out(js_store, nc, tmp_path):
    await grant(js_store, "family", "github", 2)
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        assert (await ext_call(nc, "family", idempotency_key="k", **ISSUES))["ok"]
        other = await ext_call(nc, "family", idempotency_key="k", **{**ISSUES, "query": {"state": "closed"}})
    assert not other["ok"] and "refused (key_reused)" in other["error"]
    assert len(stub.requests) == 1
    [refused] = await events_of(js_store, "ExtCallRefused")
    assert refused.decision == "key_reused"


async def test_concurrent_calls_with_one_key_wait_for_the_first_and_share_its_result(js_store, nc, tmp_path):
    await grant(js_store, "family", "github", 1)
    async with ExtStub(hold=True) as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()) as runner:
        calls = [asyncio.create_task(ext_call(nc, "family", idempotency_key="same", **ISSUES)) for _ in range(3)]
        await eventually(lambda: stub.in_flight == 1)
        await asyncio.sleep(0.3)  # the two others are queued on the key's lock, not on their way to the stub
        assert len(stub.requests) == 1 and not any(c.done() for c in calls)
        stub.release()
        replies = await asyncio.gather(*calls)
        assert len(ext_of(runner).locks) == 0  # locks are dropped once nobody holds them
    assert all(r["ok"] for r in replies), replies
    assert sorted(r["result"]["replayed"] for r in replies) == [False, True, True]
    assert len({json.dumps(r["result"]["body"]) for r in replies}) == 1
    assert len(stub.requests) == 1


async def test_a_group_over_its_in_flight_limit_is_told_to_retry_later_and_others_are_not(js_store, nc, tmp_path):
    for folder in ("family", "work"):
        await grant(js_store, folder, "github", 1)
    async with ExtStub(hold=True) as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock(),
                                                      max_in_flight_per_group=2):
        busy = [asyncio.create_task(ext_call(nc, "family", idempotency_key=f"k{i}", **ISSUES)) for i in (1, 2)]
        await eventually(lambda: stub.in_flight == 2)
        over = await ext_call(nc, "family", idempotency_key="k3", **ISSUES)
        other_group = asyncio.create_task(ext_call(nc, "work", idempotency_key="k1", **ISSUES))
        await eventually(lambda: stub.in_flight == 3)
        stub.release()
        assert all(r["ok"] for r in await asyncio.gather(*busy, other_group))
        later = await ext_call(nc, "family", idempotency_key="k3", **ISSUES)
    assert not over["ok"] and over["error"].startswith("retry later:") and "2 external calls in flight" in over["error"]
    assert later["ok"] and later["result"]["replayed"] is False
    assert len(stub.requests) == 4
    assert await events_of(js_store, "ExtCallRefused") == []  # backpressure is not a capability decision


async def test_expiry_is_checked_at_call_time_with_the_service_clock(js_store, nc, tmp_path):
    clock = FakeClock()
    await grant(js_store, "family", "github", 2, at=clock.now())
    comment = {"provider": "github", "method": "POST", "path": "/repos/octo/shop/issues/1/comments",
               "body": {"body": "hi"}}
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, clock):
        clock.advance(7 * 86400 - 1)
        before = await ext_call(nc, "family", idempotency_key="c1", **comment)
        clock.advance(1)
        after = await ext_call(nc, "family", idempotency_key="c2", **comment)
    assert before["ok"], before
    assert not after["ok"] and "refused (expired)" in after["error"]
    assert len(stub.requests) == 1
    [refused] = await events_of(js_store, "ExtCallRefused")
    assert (refused.decision, refused.level_required, refused.refused_at) == ("expired", 2, "2026-03-08T10:00:00.000Z")


async def test_merge_needs_a_level_3_grant_with_two_approvers_and_a_deny_wins_over_it(js_store, nc, tmp_path):
    merge = {"provider": "github", "method": "PUT", "path": "/repos/octo/shop/pulls/7/merge", "product": "shop"}
    await grant(js_store, "family", "github", 3, approvers=("alice",))
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        proposed_only = await ext_call(nc, "family", idempotency_key="m1", **merge)
        await change(js_store, "family", "github", lambda c, _: c.approve(grant_id="g1", approver="bob", now=T0))
        approved = await ext_call(nc, "family", idempotency_key="m2", **merge)
        await change(js_store, "family", "github",
                     lambda c, _: c.deny(product="shop", by="carol", reason="release freeze", now=T0))
        denied = await ext_call(nc, "family", idempotency_key="m3", **merge)
        other_product = await ext_call(nc, "family", idempotency_key="m4", **{**merge, "product": "blog"})
    assert not proposed_only["ok"] and "second approver" in proposed_only["error"]
    assert approved["ok"] and approved["result"]["level"] == 3
    assert not denied["ok"] and "refused (denied)" in denied["error"] and "release freeze" in denied["error"]
    assert other_product["ok"]
    assert [s.method for s in stub.requests] == ["PUT", "PUT"]
    assert [(r.decision, r.product) for r in await events_of(js_store, "ExtCallRefused")] == [
        ("insufficient", "shop"), ("denied", "shop")]


async def test_a_generic_http_provider_admits_only_allowlisted_hosts_and_methods(js_store, nc, tmp_path):
    await grant(js_store, "family", "web", 1)
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        read = await ext_call(nc, "family", provider="web", idempotency_key="r", url=f"{stub.url}/items?id=3")
        write = await ext_call(nc, "family", provider="web", idempotency_key="w", method="POST",
                               url=f"{stub.url}/items", body={"name": "x"})
        delete = await ext_call(nc, "family", provider="web", idempotency_key="d", method="DELETE",
                                url=f"{stub.url}/items/3")
        other_host = await ext_call(nc, "family", provider="web", idempotency_key="o",
                                    url=f"http://localhost:{stub.port}/items")
        userinfo = await ext_call(nc, "family", provider="web", idempotency_key="u",
                                  url=f"http://user:pw@{stub.host}/items")
    assert read["ok"] and read["result"]["body"]["path"] == "/items?id=3", read
    assert not write["ok"] and "refused (insufficient)" in write["error"]
    assert not delete["ok"] and "refused (not_allowed)" in delete["error"]
    assert not other_host["ok"] and "refused (not_allowed)" in other_host["error"]
    assert not userinfo["ok"] and "user name or password" in userinfo["error"]
    [seen] = stub.requests
    assert seen.headers["X-Api-Key"] == WEB_TOKEN and "Authorization" not in seen.headers


async def test_parameters_results_and_secrets_are_never_stored_in_clear(js_store, nc, tmp_path):
    secret = "sk_live_SECRETPARAM_9f8e7d6c"
    await grant(js_store, "family", "github", 2)
    call = {"provider": "github", "method": "POST", "path": "/repos/octo/shop/issues",
            "query": {"token": secret}, "body": {"title": f"leak {secret}"}}
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        reply = await ext_call(nc, "family", idempotency_key="p1", **call)
        repeat = await ext_call(nc, "family", idempotency_key="p1", **call)
        refused = await ext_call(nc, "family", idempotency_key="p2", **{**call, "method": "PUT",
                                                                          "path": "/repos/octo/shop/pulls/1/merge"})
    assert reply["ok"] and secret in json.dumps(reply["result"])  # the provider echoed it back to the agent
    assert repeat["result"]["body"] == reply["result"]["body"]  # and the sealed copy opens again
    assert not refused["ok"] and stub.requests[0].body == json.dumps(call["body"]).encode()
    js = nc.jetstream()
    raw = b""
    for seq in range(1, await js_store.last_seq() + 1):
        msg = await js.get_msg("NC_EVENTS", seq)
        raw += msg.data + json.dumps(msg.headers or {}).encode()
    for clear in (secret, "SECRETPARAM", GH_TOKEN, MASTER, "leak "):
        assert clear.encode() not in raw, clear
    # The stored hash is the documented HMAC of the canonical parameters under the group's audit key.
    [started] = await events_of(js_store, "ExtCallStarted")
    audit_key = hmac.new(MASTER.encode(), b"nanoclaw/ext/audit/v1/family", hashlib.sha256).digest()
    canonical = json.dumps({"provider": "github", "method": "POST", "path": call["path"], "query": call["query"],
                            "body": call["body"]}, sort_keys=True, separators=(",", ":")).encode()
    assert started.params_hash == hmac.new(audit_key, canonical, hashlib.sha256).hexdigest()


async def test_an_unreachable_provider_is_recorded_as_failed_and_a_repeat_returns_that_failure(js_store, nc, tmp_path):
    await grant(js_store, "family", "github", 1)
    async with ExtStub() as stub:
        pass  # started and stopped: its port now refuses connections
    async with ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        first = await ext_call(nc, "family", idempotency_key="down", **ISSUES)
        repeat = await ext_call(nc, "family", idempotency_key="down", **ISSUES)
    assert not first["ok"] and "ClientConnectorError" in first["error"] and "use a new key" in first["error"]
    assert repeat == first
    [finished] = await events_of(js_store, "ExtCallFinished")
    assert (finished.outcome, finished.status, finished.result_sealed) == ("failed", 0, None)


@pytest.mark.parametrize("args, error", [
    ({"provider": "github", "path": "/x"}, "'idempotency_key' must be"),
    ({"provider": "github", "path": "/x", "idempotency_key": "has space"}, "'idempotency_key' must be"),
    ({"provider": "gitlab", "path": "/x", "idempotency_key": "k"}, "unknown provider 'gitlab'; configured: github, web"),
    ({"provider": "github", "path": "repos/x", "idempotency_key": "k"}, "needs 'path'"),
    ({"provider": "github", "path": "/repos/../admin", "idempotency_key": "k"}, "'..'"),
    ({"provider": "github", "path": "/repos/x?y=1", "idempotency_key": "k"}, "query parameters in 'query'"),
    ({"provider": "github", "path": "/repos/o/r//pulls/1/merge", "method": "PUT", "idempotency_key": "k"},
     "empty segments"),
    ({"provider": "github", "path": "/x", "method": "BREW", "idempotency_key": "k"}, "'method' must be one of"),
    ({"provider": "github", "path": "/x", "body": {"a": 1}, "idempotency_key": "k"}, "GET request takes no 'body'"),
    ({"provider": "github", "path": "/x", "query": ["a"], "idempotency_key": "k"}, "'query' must be an object"),
    ({"provider": "github", "path": "/x", "product": "../p", "idempotency_key": "k"}, "invalid product"),
    ({"provider": "web", "url": "ftp://h/x", "idempotency_key": "k"}, "'url' must be an absolute"),
    ({"provider": "web", "idempotency_key": "k"}, "needs 'url'"),
])
async def test_malformed_arguments_get_an_error_naming_them_and_record_nothing(js_store, nc, tmp_path, args, error):
    await grant(js_store, "family", "github", 3, approvers=("alice", "bob"))
    seq = await js_store.last_seq()
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        reply = await ext_call(nc, "family", **args)
    assert not reply["ok"] and error in reply["error"], reply
    assert stub.requests == [] and await js_store.last_seq() == seq


async def test_without_providers_the_tool_says_external_access_is_not_set_up(js_store, nc, tmp_path):
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock(), providers={}):
        reply = await ext_call(nc, "family", idempotency_key="k", **ISSUES)
    assert reply == {"ok": False, "error": "external access is not set up: no providers in broker.ext.providers"}


async def test_providers_without_a_master_key_fail_at_start_naming_the_setting(js_store, nc, tmp_path):
    async with ExtStub() as stub:
        s = settings(tmp_path, broker={"ext": {"providers": providers(stub)}})
        with pytest.raises(ConfigError, match="ext.master_key is not set"):
            build_broker(context(nc, js_store, s, creds(master=None)))


class _StaleCallReads:
    """A repository as a second broker replica sees it just before the first one's claim is stored: the call
    aggregate reads as absent (everything else is the real repository)."""

    def __init__(self, inner):
        self.inner, self.store = inner, inner.store

    async def get(self, cls, aggregate_id):
        return None if cls is ExtCall else await self.inner.get(cls, aggregate_id)

    async def save(self, aggregate, **kw):
        return await self.inner.save(aggregate, **kw)


async def test_a_replica_that_loses_the_claim_of_a_key_does_not_call_out(js_store, nc, tmp_path):
    await grant(js_store, "family", "github", 1)
    async with ExtStub() as stub:
        config = ExtConfig.model_validate({"providers": providers(stub)})
        first = build_ext(config, creds().ext, Repository(js_store, "broker"), FakeClock())
        second = build_ext(config, creds().ext, _StaleCallReads(Repository(js_store, "broker")), FakeClock())
        request = Request("nc.ipc.family.ext_call", {"idempotency_key": "k1", **ISSUES}, "r1")
        try:
            won = await first.handle(request)
            lost = await second.handle(request)
        finally:
            await first.close()
            await second.close()
    assert won.ok, won
    assert not lost.ok and lost.error.startswith("retry later:") and "claimed by another broker" in lost.error
    assert len(stub.requests) == 1
    assert len(await events_of(js_store, "ExtCallStarted")) == 1
