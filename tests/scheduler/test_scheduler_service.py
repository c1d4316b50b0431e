"""The scheduler service on a real nats-server with a controllable clock: event-driven firing, exactly one run
per due time across restarts and replicas, catch-up after an outage, run logs, and a vanished group."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from events.catalogue.queue import task_run_id
from events.catalogue.scheduler import TaskRunRequested
from events.repository import Repository
from projections.catalog import all_projections
from projections.runner import ProjectionRunner
from projections.sqlite import open_db
from services.harness.emit import append_emit
from services.harness.service import Emit
from services.queue.service import build as build_queue
from services.router.groups import RegisteredGroup
from tests.bus import context, events_of, running
from tests.clock import FakeClock
from tests.scheduler.system import TEAM, SchedulerSystem
from tests.support import eventually, has_at_least

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


async def test_a_task_fires_at_its_due_time_and_not_before(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0))
    await sys.register_groups()
    async with sys.scheduler():
        task_id = await sys.schedule(prompt="stand-up", schedule_type="interval", schedule_value="3600000")
        await sys.advance(HOUR - timedelta(seconds=1))
        await asyncio.sleep(0.3)
        assert await sys.requests() == []
        await sys.advance(1)
        [started] = await sys.wait_started(1)
    [request] = await sys.requests()
    assert (request.task_id, request.chat_jid, request.group_folder, request.prompt) == (
        task_id, TEAM, "whatsapp_team", "stand-up")
    assert request.context_mode == "group" and started.due_at == "2026-11-02T09:00:00.000Z"


async def test_a_restart_across_a_due_time_gives_exactly_one_run(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0))
    await sys.register_groups()
    async with sys.scheduler():
        await sys.schedule(prompt="p", schedule_type="cron", schedule_value="0 9 * * *")
    await sys.set_time(T0 + HOUR + timedelta(seconds=5))  # due while no scheduler runs
    async with sys.scheduler():
        await sys.wait_started(1)
    async with sys.scheduler("-b"):  # a fresh instance (own read model) after the claim: nothing to claim again
        await asyncio.sleep(0.5)
    assert len(await sys.started()) == 1 and len(await sys.requests()) == 1


async def test_two_scheduler_replicas_give_one_run_per_due_time(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0))
    await sys.register_groups()
    async with sys.scheduler("-a"), sys.scheduler("-b"), sys.auto_runner():
        task_id = await sys.schedule(prompt="p", schedule_type="interval", schedule_value="600000")
        for n in range(1, 6):
            await sys.advance(600)
            await sys.wait_started(n)
        await eventually(lambda: has_at_least(events_of(js_store, "TaskRunFinished"), 5))
    dues = [s.due_at for s in await sys.started(task_id)]
    assert len(dues) == 5 and len(set(dues)) == 5
    assert len(await sys.requests()) == 5


async def test_two_replicas_starting_after_an_outage_claim_each_due_time_once(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0))
    await sys.register_groups()
    async with sys.scheduler():
        ids = [await sys.schedule(prompt=f"p{i}", schedule_type="cron", schedule_value="*/5 * * * *") for i in range(4)]
    await sys.set_time(T0 + timedelta(minutes=5, seconds=1))
    async with sys.scheduler("-a"), sys.scheduler("-b"):
        await sys.wait_started(4)
    assert sorted(s.task_id for s in await sys.started()) == sorted(ids)


async def test_catch_up_policies_after_a_three_day_outage(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0), max_catch_up_runs=3)
    await sys.register_groups()
    async with sys.scheduler():
        skip, once, every = [await sys.schedule(prompt=p, schedule_type="cron", schedule_value="0 * * * *", catch_up=p)
                             for p in ("skip", "once", "all")]
    await sys.set_time(T0 + timedelta(days=3, minutes=30))
    async with sys.scheduler(), sys.auto_runner():
        await sys.wait_started(1, once)
        await sys.wait_started(3, every)
        await eventually(lambda: has_at_least(events_of(js_store, "TaskRunFinished"), 4))
    skipped = {s.task_id: s for s in await events_of(js_store, "TaskRunsSkipped")}
    assert skipped[skip].count == 72 and skipped[every].count == 69 and once not in skipped
    assert await sys.started(skip) == []
    [run] = await sys.started(once)
    assert len(run.covers) == 71 and run.due_at == "2026-11-05T08:00:00.000Z"
    assert [s.due_at for s in await sys.started(every)] == [
        "2026-11-05T06:00:00.000Z", "2026-11-05T07:00:00.000Z", "2026-11-05T08:00:00.000Z"]


async def test_a_finished_run_is_logged_and_a_once_task_completes(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0))
    await sys.register_groups()
    async with sys.scheduler() as runner:
        task_id = await sys.schedule(prompt="remind me", schedule_type="once", schedule_value="2026-11-02T08:30:00")
        await sys.advance(timedelta(minutes=30))
        [request] = [r for r in await sys.requests()]
        await sys.wait_started(1)
        await sys.finish(request, text="Reminder sent. " + "x" * 300)
        await eventually(lambda: has_at_least(events_of(js_store, "TaskCompleted"), 1))
        rm = runner.service.deps.readmodel
        await rm.wait_for(await js_store.last_seq())
        [row] = rm.query("SELECT * FROM scheduled_tasks WHERE id = ?", (task_id,))
        [log] = rm.query("SELECT * FROM task_run_logs WHERE task_id = ?", (task_id,))
    assert (row["status"], row["next_run"], row["last_result"]) == ("completed", None, ("Reminder sent. " + "x" * 300)[:200])
    assert (log["status"], log["duration_ms"], log["error"]) == ("success", 1500, None)


async def test_a_failed_run_is_logged_as_an_error_and_reported_to_the_chat_when_configured(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0), report_errors=True)
    await sys.register_groups()
    async with sys.scheduler():
        await sys.schedule(prompt="p", schedule_type="interval", schedule_value="60000")
        await sys.advance(60)
        await sys.wait_started(1)
        [request] = await sys.requests()
        await sys.finish(request, status="failed", text=None)
        await eventually(lambda: has_at_least(events_of(js_store, "OutboundMessageRequested"), 1))
    [fin] = await events_of(js_store, "TaskRunFinished")
    assert (fin.status, fin.error, fin.last_result) == ("error", "boom", "Error: boom")
    [notice] = await events_of(js_store, "OutboundMessageRequested")
    assert notice.chat_jid == TEAM and "failed: boom" in notice.text


async def test_a_task_whose_group_is_gone_is_paused_with_an_error_instead_of_firing(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0), report_errors=True)
    await sys.register_groups()
    async with sys.scheduler():
        await sys.schedule(prompt="p", schedule_type="interval", schedule_value="60000")
        repo = Repository(js_store, "test")
        group = await repo.get(RegisteredGroup, TEAM)
        group.remove()
        await repo.save(group)
        await sys.advance(60)
        await eventually(lambda: has_at_least(events_of(js_store, "TaskPaused"), 1))
        await sys.advance(600)
        await asyncio.sleep(0.3)
    [paused] = await events_of(js_store, "TaskPaused")
    assert paused.by == "scheduler" and "no longer registered" in paused.error
    assert await sys.requests() == []
    [notice] = await events_of(js_store, "OutboundMessageRequested")
    assert notice.chat_jid == TEAM and "was paused" in notice.text


async def test_a_fixed_hour_job_fires_once_through_the_berlin_fall_back_night(nc, js_store, tmp_path):
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 10, 24, 12, 0, tzinfo=berlin)
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(start.astimezone(timezone.utc)))
    await sys.register_groups()
    async with sys.scheduler(), sys.auto_runner():
        task_id = await sys.schedule(prompt="p", schedule_type="cron", schedule_value="30 2 * * *",
                                     timezone="Europe/Berlin")
        for _ in range(4 * 40):  # 40 hours in 15-minute steps
            await sys.advance(900)
        await sys.wait_started(2)
    fired = [datetime.fromisoformat(s.due_at.replace("Z", "+00:00")).astimezone(berlin).isoformat()
             for s in await sys.started(task_id)]
    assert fired == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


async def test_the_scheduler_projections_rebuild_from_the_log_equal_to_the_live_ones(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0))
    await sys.register_groups()
    async with sys.scheduler() as runner, sys.auto_runner():
        a = await sys.schedule(prompt="a", schedule_type="interval", schedule_value="60000")
        b = await sys.schedule(prompt="b", schedule_type="cron", schedule_value="*/2 * * * *")
        for _ in range(4):
            await sys.advance(60)
        await eventually(lambda: has_at_least(events_of(js_store, "TaskRunFinished"), 5))
        assert (await sys.tool("whatsapp_team", "pause_task", task_id=b))["ok"]
        assert (await sys.tool("whatsapp_team", "cancel_task", task_id=a))["ok"]
        await asyncio.sleep(0.3)
        rm = runner.service.deps.readmodel
        await rm.wait_for(await js_store.last_seq())
        live = [list(map(tuple, rm.query(f"SELECT * FROM {t} ORDER BY 1"))) for t in ("scheduled_tasks", "task_run_logs")]
    db = open_db(":memory:")
    replay = ProjectionRunner(db, [p for p in all_projections() if p.name in ("scheduled_tasks", "task_run_logs")], js_store)
    replay.prepare()
    await replay.catch_up()
    rebuilt = [db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("scheduled_tasks", "task_run_logs")]
    assert rebuilt == live
    assert [r[0] for r in live[0]] == [b]
    assert live[1] and {r[1] for r in live[1]} == {b}  # a's run logs went with it (v1 deleteTask)
    assert live[0][0][9] == "paused"


async def test_a_due_task_runs_as_a_task_run_through_the_group_queue(nc, js_store, tmp_path):
    clock = FakeClock(T0)
    sys = SchedulerSystem(nc, js_store, tmp_path, clock)
    await sys.register_groups()
    async with sys.scheduler(), running(lambda ctx: build_queue(ctx, clock=clock), context(nc, js_store, sys.settings)):
        task_id = await sys.schedule(prompt="weekly report", schedule_type="cron", schedule_value="0 9 * * 1",
                                     context_mode="isolated")
        await sys.advance(HOUR)
        await eventually(lambda: has_at_least(events_of(js_store, "RunDispatched"), 1))
    [dispatch] = await events_of(js_store, "RunDispatched")
    [request] = await sys.requests()
    assert (dispatch.kind, dispatch.task_id, dispatch.chat_jid, dispatch.prompt, dispatch.context_mode) == (
        "task", task_id, TEAM, "weekly report", "isolated")
    assert dispatch.run_id == task_run_id(request.run_id)


async def test_a_task_run_requested_by_another_service_is_left_alone(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock(T0))
    await sys.register_groups()
    foreign = TaskRunRequested(task_id="gov:t1.work.v3", run_id="gov-run-1", chat_jid=TEAM, group_folder="whatsapp_team",
                               prompt="do the work")
    async with sys.scheduler() as runner:
        await append_emit(js_store, Emit.new(foreign.task_id, foreign), source="governance", msg_id="gov-run-1")
        await sys.finish(foreign)
        await eventually(lambda: settled(runner))
        dead = (await nc.jetstream().stream_info("NC_DLQ")).state.messages
    assert await events_of(js_store, "TaskRunFinished") == [] and await events_of(js_store, "TaskCreated") == []
    assert dead == 0  # handled (ignored), not failed into the dead-letter stream


async def settled(runner) -> bool:
    info = await runner.nc.jetstream().consumer_info("NC_EVENTS", "svc_scheduler")
    return info.num_pending == 0 and info.num_ack_pending == 0
