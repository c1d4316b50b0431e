"""Queue metrics (``/metrics``) and failures from the queue's and the runner's events, and the operator's consumer
of ``RunAbandoned`` (issue 16): a real nats-server, the real projections service, events as the router, queue
and runner append them."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import aiohttp
import structlog
from prometheus_client.parser import text_string_to_metric_families

from events.catalogue.agent import AgentRunFinished, AgentRunStarted
from events.catalogue.queue import RunAbandoned, RunDispatched, RunQueued, RunReleased, RunRetryScheduled, message_run_id
from events.catalogue.router import AgentTurnRequested
from events.catalogue.types import iso_utc
from events.envelope import utcnow
from projections.queue_stats import QueueStats, snapshot
from projections.run_failures import RunFailures, recent_failures
from services.harness.emit import append_emit
from services.harness.service import Emit
from services.harness.status import start_status_server, status_app
from services.projector.service import build as build_projector, read_model_path
from tests.bus import context, running, settings
from tests.support import eventually, projected


def turn(turn_id: str, folder: str) -> AgentTurnRequested:
    return AgentTurnRequested(turn_id=turn_id, chat_jid=f"term:{folder}", group_folder=folder, channel="terminal",
                              prompt="<messages/>", message_ids=[turn_id], previous_cursor="", cursor=turn_id)


def spec(run_id: str, folder: str) -> dict:
    return {"run_id": run_id, "chat_jid": f"term:{folder}", "group_folder": folder, "prompt": "<messages/>"}


async def put(store, aggregate_id: str, payload, key: str) -> int:
    return (await append_emit(store, Emit.append(aggregate_id, payload), source="test", msg_id=key)).seq


def metric_values(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_queue_depth_wait_duration_retries_and_abandons_reach_metrics_and_failures(nc, js_store, tmp_path):
    s = settings(tmp_path)
    ctx = context(nc, js_store, s)
    path = read_model_path(s.data_dir)
    with structlog.testing.capture_logs() as logs:
        async with running(build_projector, ctx):
            # Family: a turn waits, is dispatched, starts, finishes in 1.5 s.
            t1 = "turn-family-1"
            run1 = message_run_id(t1)
            await put(js_store, "term:family", turn(t1, "family"), "t1")
            await put(js_store, "default", RunQueued(**spec(run1, "family"), turn_id=t1), "q1")
            await put(js_store, "default", RunDispatched(**spec(run1, "family"), turn_ids=[t1]), "d1")
            await put(js_store, run1, AgentRunStarted(run_id=run1, chat_jid="term:family", group_folder="family"), "s1")
            await put(js_store, run1, AgentRunFinished(run_id=run1, chat_jid="term:family", group_folder="family",
                                                       status="succeeded", duration_ms=1500), "f1")
            await put(js_store, "default", RunReleased(run_id=run1, chat_jid="term:family", group_folder="family",
                                                       outcome="succeeded"), "r1")
            # Work: two turns waiting behind a failing run, one retry, then the queue gives up.
            for n in (1, 2):
                await put(js_store, "default", RunQueued(**spec(f"work-{n}", "work"), turn_id=f"w{n}"), f"wq{n}")
            await put(js_store, "default", RunRetryScheduled(chat_jid="term:work", group_folder="work", failed_run_id="w0",
                                                             attempt=1, delay_ms=5000, due_at=iso_utc(utcnow())), "rt")
            last = await put(js_store, "default", RunAbandoned(chat_jid="term:work", group_folder="work", run_id="w0",
                                                               attempts=5, reason="5 failed attempts"), "ab")
            await eventually(lambda: projected(path, last))
            await eventually(lambda: any(e["log_level"] == "error" and e.get("run_id") == "w0" for e in logs), detail=logs)

            status = await start_status_server(status_app(ctx.metrics, lambda: {}), "127.0.0.1", 0)
            port = status.addresses[0][1]
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        text = await resp.text()
            finally:
                await status.cleanup()

    db = sqlite3.connect(path)
    [(requested, started, wait_ms)] = db.execute("SELECT requested_at, started_at, wait_ms FROM queue_turns").fetchall()
    expected_wait = (datetime.fromisoformat(started) - datetime.fromisoformat(requested)).total_seconds()
    assert wait_ms == round(expected_wait * 1000) and wait_ms >= 0

    m = metric_values(text)
    assert m[("nanoclaw_queue_depth", (("group", "work"),))] == 2
    assert m[("nanoclaw_queue_depth", (("group", "family"),))] == 0
    assert m[("nanoclaw_queue_depth_total", ())] == 2
    assert m[("nanoclaw_queue_retries_total", (("group", "work"),))] == 1
    assert m[("nanoclaw_queue_abandoned_total", (("group", "work"),))] == 1
    assert m[("nanoclaw_run_duration_seconds_count", ())] == 1 and m[("nanoclaw_run_duration_seconds_sum", ())] == 1.5
    assert m[("nanoclaw_queue_wait_seconds_count", ())] == 1
    assert abs(m[("nanoclaw_queue_wait_seconds_sum", ())] - wait_ms / 1000) < 1e-9
    assert m[("nanoclaw_queue_running", (("group", "family"),))] == 0

    [abandon] = recent_failures(db, abandoned_only=True)
    assert abandon["group_folder"] == "work" and abandon["attempts"] == 5 and abandon["detail"] == "5 failed attempts"
    [line] = [e for e in logs if e["log_level"] == "error" and e.get("run_id") == "w0"]
    assert line["group_folder"] == "work" and line["attempts"] == 5 and "abandoned" in line["event"]


def test_new_queue_event_types_and_fields_leave_the_statistics_working():
    """The queue gains event types and fields over time: they are not this projection's business."""
    from projections.base import EventRecord

    db = sqlite3.connect(":memory:")
    for p in (QueueStats(), RunFailures()):
        for ddl in p.tables.values():
            for statement in filter(str.strip, ddl.split(";")):
                db.execute(statement)
    at = "2026-03-01T10:00:00+00:00"
    queued = EventRecord(1, "nc.evt.queue.runqueue.default.RunQueued",
                         None, {"eventtype": "RunQueued", "time": at, "data": {
                             **spec("r1", "family"), "turn_id": "t1", "priority": "high", "new_field": [1, 2]}})
    QueueStats().apply(db, queued)
    assert not QueueStats().wants("RunPreempted") and not RunFailures().wants("RunPreempted")
    assert snapshot(db).depth == 1
