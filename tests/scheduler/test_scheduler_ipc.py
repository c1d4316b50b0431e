"""The scheduling tools through real NATS requests, with v1's authorization matrix (nanoclaw-behaviour §24
ipc-auth: groups main@g.us → whatsapp_main (main), other@g.us → whatsapp_other, team@g.us → whatsapp_team)."""

from __future__ import annotations

import pytest

from events.repository import Repository
from services.scheduler.task import ScheduledTask
from tests.bus import events_of
from tests.clock import FakeClock
from tests.scheduler.system import MAIN, OTHER, SchedulerSystem

ONE_OFF = dict(prompt="p", schedule_type="once", schedule_value="2026-12-01T09:00:00")


@pytest.fixture
async def system(nc, js_store, tmp_path):
    sys = SchedulerSystem(nc, js_store, tmp_path, FakeClock())
    await sys.register_groups()
    async with sys.scheduler():
        yield sys


async def task(sys: SchedulerSystem, task_id: str) -> ScheduledTask | None:
    return await Repository(sys.store, "test").get(ScheduledTask, task_id)


async def test_main_can_schedule_a_task_for_another_registered_group(system):
    reply = await system.tool("whatsapp_main", "schedule_task", target_group_jid=OTHER, **ONE_OFF)
    assert reply["ok"], reply
    t = await task(system, reply["result"].split()[1])
    assert (t.group_folder, t.chat_jid, t.created_by) == ("whatsapp_other", OTHER, "whatsapp_main")


async def test_a_group_can_schedule_for_itself(system):
    reply = await system.tool("whatsapp_other", "schedule_task", **ONE_OFF)
    assert reply["ok"] and reply["result"].startswith("Task task-") and "next run 2026-12-01 09:00 UTC" in reply["result"]


async def test_a_non_main_group_cannot_schedule_for_another_group(system, js_store):
    reply = await system.tool("whatsapp_other", "schedule_task", target_group_jid=MAIN, **ONE_OFF)
    assert not reply["ok"] and "only the main group" in reply["error"]
    assert await events_of(js_store, "TaskCreated") == []


async def test_an_unregistered_target_is_refused_even_for_main(system, js_store):
    reply = await system.tool("whatsapp_main", "schedule_task", target_group_jid="unknown@g.us", **ONE_OFF)
    assert not reply["ok"] and "not a registered group" in reply["error"]
    assert await events_of(js_store, "TaskCreated") == []


async def test_an_unregistered_caller_is_refused(system):
    reply = await system.tool("whatsapp_stranger", "schedule_task", **ONE_OFF)
    assert not reply["ok"] and "no registered group" in reply["error"]


@pytest.mark.parametrize("args,problem", [
    (dict(schedule_type="cron", schedule_value="not a cron"), "invalid cron"),
    (dict(schedule_type="interval", schedule_value="abc"), "invalid interval"),
    (dict(schedule_type="interval", schedule_value="0"), "invalid interval"),
    (dict(schedule_type="once", schedule_value="not-a-date"), "invalid time"),
    (dict(schedule_type="cron", schedule_value="0 9 * * *", context_mode="bogus"), "context_mode"),
])
async def test_an_invalid_schedule_request_creates_nothing_and_says_why(system, js_store, args, problem):
    reply = await system.tool("whatsapp_team", "schedule_task", prompt="p", **args)
    assert not reply["ok"] and problem in reply["error"]
    assert await events_of(js_store, "TaskCreated") == []


@pytest.mark.parametrize("given,stored", [({"context_mode": "group"}, "group"), ({"context_mode": "isolated"}, "isolated"),
                                          ({}, "group")])
async def test_context_mode_is_kept_and_defaults_to_group(system, given, stored):
    reply = await system.tool("whatsapp_team", "schedule_task", **ONE_OFF, **given)
    assert (await task(system, reply["result"].split()[1])).context_mode == stored


@pytest.mark.parametrize("actor,owner,allowed", [
    ("whatsapp_main", "whatsapp_other", True),   # main may manage any group's task
    ("whatsapp_other", "whatsapp_other", True),  # a group its own
    ("whatsapp_other", "whatsapp_main", False),  # not main's
    ("whatsapp_team", "whatsapp_other", False),  # nor another group's
])
@pytest.mark.parametrize("tool,status_after", [("pause_task", "paused"), ("resume_task", "active"),
                                               ("cancel_task", "cancelled")])
async def test_pause_resume_and_cancel_follow_the_v1_matrix(system, actor, owner, allowed, tool, status_after):
    task_id = await system.schedule(owner, **ONE_OFF)
    if tool == "resume_task":
        assert (await system.tool(owner, "pause_task", task_id=task_id))["ok"]
    before = (await task(system, task_id)).status
    reply = await system.tool(actor, tool, task_id=task_id)
    assert reply["ok"] is allowed, reply
    assert (await task(system, task_id)).status == (status_after if allowed else before)
    refusals = await events_of(system.store, "SandboxRequestRefused")
    if not allowed:
        assert "only the main group" in reply["error"]
        assert [(r.service, r.group_folder, r.operation) for r in refusals] == [("scheduler", actor, tool)]
    else:
        assert refusals == []


async def test_update_changes_a_task_and_recomputes_its_next_run(system):
    task_id = await system.schedule("whatsapp_team", **ONE_OFF)
    reply = await system.tool("whatsapp_team", "update_task", task_id=task_id, schedule_value="2026-12-02T10:00:00",
                              prompt="new prompt")
    assert reply["ok"] and "2026-12-02 10:00" in reply["result"]
    t = await task(system, task_id)
    assert (t.prompt, t.next_run) == ("new prompt", "2026-12-02T10:00:00.000Z")


async def test_an_unknown_task_is_reported(system):
    reply = await system.tool("whatsapp_main", "pause_task", task_id="task-nope")
    assert not reply["ok"] and "no task 'task-nope'" in reply["error"]


async def test_list_tasks_shows_main_every_task_and_a_group_only_its_own(system):
    mine = await system.schedule("whatsapp_team", **ONE_OFF)
    theirs = await system.schedule("whatsapp_other", **{**ONE_OFF, "prompt": "x" * 80})
    team = (await system.tool("whatsapp_team", "list_tasks"))["result"]
    main = (await system.tool("whatsapp_main", "list_tasks"))["result"]
    assert mine in team and theirs not in team
    assert mine in main and theirs in main and "x" * 50 + "..." in main
    assert f"- [{mine}] p (once: 2026-12-01T09:00:00) - active, next: 2026-12-01 09:00 UTC" in team
