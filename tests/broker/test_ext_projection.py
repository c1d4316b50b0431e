"""The ``ext_capabilities`` and ``ext_calls`` projections: kept live batch by batch while grants change and calls
are made, then rebuilt from the log into identical tables (what ``nanoclaw audit verify`` checks)."""

from __future__ import annotations

from projections.audit import verify
from projections.catalog import all_projections
from projections.ext import ExtCalls, ExtCapabilities, ext_projections
from projections.runner import ProjectionRunner
from projections.sqlite import open_db
from tests.broker.ext_stub import ExtStub
from tests.broker.ext_support import change, ext_broker, ext_call, grant
from tests.clock import T0, FakeClock

ISSUES = {"provider": "github", "path": "/repos/octo/shop/issues"}


def test_the_ext_projections_are_in_the_catalogue_that_audit_rebuilds():
    names = {p.name for p in all_projections()}
    assert {ExtCapabilities.name, ExtCalls.name} <= names


async def test_grants_denies_and_calls_project_live_and_a_rebuild_matches(js_store, nc, tmp_path):
    live_path = tmp_path / "live.db"
    live = ProjectionRunner(open_db(live_path), ext_projections(), js_store)
    live.prepare()
    await grant(js_store, "family", "github", 1)
    await grant(js_store, "family", "github", 3, product="shop", approvers=("alice",))
    await live.catch_up()
    await change(js_store, "family", "github", lambda c, _: c.approve(grant_id="g2", approver="bob", now=T0))
    await change(js_store, "family", "web", lambda c, _: c.deny(product=None, by="carol", reason="no", now=T0))
    await change(js_store, "family", "web", lambda c, _: c.lift_deny(product=None, by="carol", reason="ok", now=T0))
    await change(js_store, "work", "github", lambda c, _: c.deny(product="shop", by="carol", reason="freeze", now=T0))
    await grant(js_store, "work", "github", 2)
    await change(js_store, "work", "github", lambda c, _: c.revoke(grant_id="g1", by="carol", reason="", now=T0))
    await live.catch_up()
    async with ExtStub() as stub, ext_broker(nc, js_store, tmp_path, stub, FakeClock()):
        assert (await ext_call(nc, "family", idempotency_key="a", **ISSUES))["ok"]
        assert (await ext_call(nc, "family", idempotency_key="a", **ISSUES))["result"]["replayed"]
        await live.catch_up()
        assert not (await ext_call(nc, "family", idempotency_key="b", method="POST", **ISSUES, body={}))["ok"]
        assert not (await ext_call(nc, "work", idempotency_key="c", **ISSUES))["ok"]
        assert not (await ext_call(nc, "family", idempotency_key="a", **ISSUES, query={"x": 1}))["ok"]
    await live.catch_up()

    db = open_db(live_path)
    grants = db.execute("SELECT grant_id, group_folder, level, product, status, approvers, expires_at"
                        " FROM ext_capabilities ORDER BY group_folder, grant_id").fetchall()
    assert grants == [("g1", "family", 1, None, "active", "alice", None),
                      ("g2", "family", 3, "shop", "active", "alice,bob", "2026-03-08T10:00:00.000Z"),
                      ("g1", "work", 2, None, "revoked", "alice", "2026-03-08T10:00:00.000Z")]
    assert db.execute("SELECT group_folder, provider, product, reason FROM ext_denies").fetchall() == [
        ("work", "github", "shop", "freeze")]
    calls = db.execute("SELECT group_folder, idempotency_key, level, decision, status, outcome, length(params_hash)"
                       " FROM ext_calls ORDER BY seq").fetchall()
    assert calls == [("family", "a", 1, "allowed", 200, "ok", 64), ("family", "b", 2, "insufficient", None, None, 64),
                     ("work", "c", 1, "insufficient", None, None, 64), ("family", "a", 1, "key_reused", None, None, 64)]

    checks = await verify(js_store, live_path, ext_projections())
    assert {c.table for c in checks} == {"ext_capabilities", "ext_denies", "ext_calls"}
    assert all(c.ok for c in checks), checks
