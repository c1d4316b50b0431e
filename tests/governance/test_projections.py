"""The governance read models (products, gov_tasks, gov_activities, gov_approvals, gov_dispatches): kept live by
the projector and by the governance service's private read model, and rebuilt from the log to the same rows
(``nanoclaw audit verify``)."""

from __future__ import annotations

import sqlite3

from projections.audit import rebuild, table_checksum, verify
from projections.catalog import all_projections
from services.projector.service import build as build_projector, read_model_path
from tests.bus import context, running
from tests.governance.helpers import (DEV, MAIN, SEC, ask, gov_settings, governance, load, move, ok,
                                      register_groups)
from tests.support import eventually, projected

TABLES = ["products", "gov_tasks", "gov_activities", "gov_approvals", "gov_dispatches"]




async def governed_history(nc, store) -> tuple[str, str]:
    """A product, a task through every stage to DONE (dispatches included), and a second task left BLOCKED."""
    ok(await ask(nc, MAIN, "gov_product_save", {"product_id": "shop", "name": "Shop", "risk_level": "high"}))
    task = ok(await ask(nc, MAIN, "gov_create_task", {"title": "Harden checkout", "product_id": "shop",
                                                       "gates": ["security"], "assignee": DEV}))
    task = await move(nc, MAIN, await move(nc, MAIN, task, "TRIAGED", reason="real risk"), "READY")
    await eventually(lambda: is_state(store, task["task_id"], "DOING"))
    doing = await load(store, task["task_id"])
    await move(nc, DEV, {"task_id": task["task_id"], "version": doing.version}, "REVIEW",
               review_summary="CSRF tokens on every form", evidence=["pr/41", "ci/977"])
    await eventually(lambda: is_state(store, task["task_id"], "APPROVAL"))
    approval = await load(store, task["task_id"])
    ok(await ask(nc, SEC, "gov_approve", {"task_id": task["task_id"], "gate": "security",
                                          "expected_version": approval.version, "evidence": ["zap-scan.html"]}))
    other = ok(await ask(nc, DEV, "gov_create_task", {"title": "Refactor cart"}))
    await move(nc, MAIN, other, "BLOCKED", reason="after the release")
    return task["task_id"], other["task_id"]


async def is_state(store, task_id: str, state: str) -> bool:
    return (await load(store, task_id)).state == state


async def test_governance_tables_rebuilt_from_the_log_equal_the_live_ones(nc, js_store, tmp_path):
    await register_groups(js_store)
    s = gov_settings(tmp_path, gates={"security": {"role": "security", "group": SEC}})
    async with running(build_projector, context(nc, js_store, s)), governance(nc, js_store, tmp_path, settings=s) as gov:
        done_id, blocked_id = await governed_history(nc, js_store)
        last = await js_store.last_seq()
        await eventually(lambda: projected(read_model_path(s.data_dir), last))
        await gov.service.readmodel.wait_for(last)
        private = s.data_dir / "governance" / "readmodel.db"

        checks = {c.table: c for c in await verify(js_store, read_model_path(s.data_dir), all_projections())}
        assert all(checks[t].ok for t in TABLES), [checks[t] for t in TABLES if not checks[t].ok]
        rebuilt = tmp_path / "rebuilt.db"
        await rebuild(js_store, rebuilt, all_projections())

    fresh, live = sqlite3.connect(rebuilt), sqlite3.connect(private)
    for table in TABLES:
        assert table_checksum(fresh, table) == table_checksum(live, table), table
    fresh.row_factory = sqlite3.Row
    tasks = {r["task_id"]: dict(r) for r in fresh.execute("SELECT * FROM gov_tasks")}
    assert (tasks[done_id]["state"], tasks[done_id]["review_summary"], tasks[done_id]["product_id"]) == (
        "DONE", "CSRF tokens on every form", "shop")
    assert (tasks[blocked_id]["state"], tasks[blocked_id]["resume_state"]) == ("BLOCKED", "INBOX")
    trail = [(r["kind"], r["from_state"], r["to_state"], r["actor"]) for r in fresh.execute(
        "SELECT * FROM gov_activities WHERE task_id = ? ORDER BY seq, idx", (done_id,))]
    assert trail == [
        ("created", None, "INBOX", "group:whatsapp_main"),
        ("transition", "INBOX", "TRIAGED", "group:whatsapp_main"),
        ("transition", "TRIAGED", "READY", "group:whatsapp_main"),
        ("transition", "READY", "DOING", "governance"),
        ("dispatch", None, None, "governance"),
        ("transition", "DOING", "REVIEW", "group:dev-team"),
        ("transition", "REVIEW", "APPROVAL", "governance"),
        ("dispatch", None, None, "governance"),
        ("approval", None, None, "group:sec-team"),
        ("transition", "APPROVAL", "DONE", "group:sec-team"),
    ]
    [review] = fresh.execute("SELECT evidence, reason FROM gov_activities WHERE task_id = ? AND to_state = 'REVIEW'",
                             (done_id,)).fetchall()
    assert review["evidence"] == '["pr/41", "ci/977"]'
    [approval] = fresh.execute("SELECT * FROM gov_approvals").fetchall()
    assert (approval["task_id"], approval["gate"], approval["approver"]) == (done_id, "security", "group:sec-team")
    dispatches = [(r["purpose"], r["group_folder"]) for r in fresh.execute("SELECT * FROM gov_dispatches ORDER BY at, purpose")]
    assert sorted(dispatches) == [("approve", SEC), ("execute", DEV)]
    [product] = fresh.execute("SELECT * FROM products").fetchall()
    assert (product["product_id"], product["risk_level"], product["status"]) == ("shop", "high", "active")
