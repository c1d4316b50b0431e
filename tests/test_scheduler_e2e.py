"""Scheduling end to end, in trusted process mode: the agent schedules a task with its ``schedule_task`` tool
over NATS (its per-run identity), the scheduler fires it on time, the group queue runs it as a task run, and
the agent's task output reaches the chat; the run is logged on the task."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.agent_path import http_port, system
from tests.bus import events_of
from tests.gateway.test_gateway_service import post
from tests.router.test_router_service import register
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually, has_at_least
from tests.test_agent_path_e2e import replies


async def test_an_agent_schedules_a_task_that_runs_later_and_answers_in_the_chat(tmp_path):
    at = (datetime.now(timezone.utc) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")  # local time, zone UTC
    steps = [("tool_use", "mcp__nc__schedule_task", {"prompt": "Share the daily tip", "schedule_type": "once",
                                                      "schedule_value": at}),
             ("text", "Scheduled."),
             ("text", "Tip: drink water.")]
    with StubAnthropic(steps=steps) as stub:
        async with system(tmp_path, stub) as (host, store, _):
            await register(store, jid="http:shop", folder="shop", requires_trigger=False)
            status, _ = await post(http_port(host), {"chat": "shop", "sender": "eve", "text": "remind me later"})
            assert status == 202
            assert await replies(http_port(host), "shop", 2) == ["Scheduled.", "Tip: drink water."]
            await eventually(lambda: has_at_least(events_of(store, "TaskCompleted"), 1), timeout=30)
            [created] = await events_of(store, "TaskCreated")
            [started] = await events_of(store, "TaskRunStarted")
            [finished] = await events_of(store, "TaskRunFinished")
            [dispatch] = [d for d in await events_of(store, "RunDispatched") if d.kind == "task"]
    assert (created.group_folder, created.created_by, created.context_mode) == ("shop", "shop", "group")
    assert started.due_at.startswith(at) and dispatch.task_id == created.task_id
    assert (finished.status, finished.result) == ("success", "Tip: drink water.")
    tool_results = [b for r in stub.message_requests for m in r.body["messages"] if isinstance(m.get("content"), list)
                    for b in m["content"] if b.get("type") == "tool_result"]
    assert any(f"Task {created.task_id} scheduled: once" in str(b["content"]) for b in tool_results)
