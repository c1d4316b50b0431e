"""Queue rules beyond v1's own tests: coalescing, idempotency, retry bookkeeping, interrupted tasks, replay."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.catalogue.router import AgentTurnRequested
from services.queue.config import QueueConfig
from events.catalogue.queue import message_run_id, rerun_id, task_run_id
from services.queue.runqueue import QUEUE_ID, RunQueue
from tests.queue.driver import QueueDriver, only, types

A, B, C, D = "a@g.us", "b@g.us", "c@g.us", "d@g.us"


async def test_message_runs_queued_behind_a_task_are_coalesced_into_one_run():
    q = QueueDriver()
    [task] = only(await q.task(A, "task-1"), "RunDispatched")
    await q.turn(A, 1, prompt="<messages>one</messages>")
    await q.turn(A, 2, prompt="<messages>two</messages>")
    [run] = only(await q.finished(task.run_id, A), "RunDispatched")
    assert run.run_id == message_run_id(f"{A}/t1") and run.turn_ids == [f"{A}/t1", f"{A}/t2"]
    assert run.queued_run_ids == [message_run_id(f"{A}/t1"), message_run_id(f"{A}/t2")]
    assert run.prompt == "<messages>one</messages>\n<messages>two</messages>"
    assert (run.kind, run.channel, run.context_mode, run.group_folder) == ("message", "whatsapp", "group", "a")


async def test_a_task_dispatch_carries_what_the_runner_needs():
    q = QueueDriver()
    [run] = only(await q.task(A, "task-1"), "RunDispatched")
    assert (run.run_id, run.kind, run.task_id, run.prompt, run.context_mode, run.queued_run_ids, run.attempt) == (
        task_run_id("task-1/run1"), "task", "task-1", "do task-1", "isolated", [task_run_id("task-1/run1")], 0)


async def test_a_redelivered_trigger_dispatches_once():
    q = QueueDriver()
    delivery, first = await q.publish(A, _turn_payload(A))
    assert types(first) == ["RunQueueOpened", "RunQueued", "RunDispatched"]
    assert await q.deliver(delivery) == []
    _, again = await q.publish(A, _turn_payload(A))  # the same turn as a second event
    assert again == [] and len(await q.dispatched()) == 1


async def test_the_same_task_id_pending_twice_is_queued_once():
    q = QueueDriver()
    await q.turn(A)
    assert types(await q.task(A, "task-1", 1)) == ["RunQueued"]
    assert await q.task(A, "task-1", 2) == []


async def test_waiting_groups_are_served_first_in_first_out_and_their_tasks_first():
    q = QueueDriver(cap=1)
    [a] = only(await q.turn(A), "RunDispatched")
    await q.turn(C)
    await q.turn(B)
    await q.turn(D)
    await q.task(B, "task-b")
    assert (await q.queue()).waiting == [C, B, D]
    [c] = only(await q.finished(a.run_id, A), "RunDispatched")
    [b] = only(await q.finished(c.run_id, C), "RunDispatched")
    assert (c.chat_jid, b.chat_jid, b.task_id) == (C, B, "task-b")
    [b2] = only(await q.finished(b.run_id, B), "RunDispatched")
    assert (b2.chat_jid, b2.kind) == (B, "message")  # the group's own pending work before the next group (v1 drainGroup)


async def test_a_success_resets_the_retry_count_and_a_failure_after_output_counts_as_handled():
    q = QueueDriver()
    [r1] = only(await q.turn(A, 1), "RunDispatched")
    await q.finished(r1.run_id, A, status="failed")
    [r2] = only(await q.turn(A, 2), "RunDispatched")
    assert r2.attempt == 1
    emitted = await q.finished(r2.run_id, A, status="timed_out", output_delivered=True)
    assert types(emitted) == ["RunReleased"] and emitted[0].outcome == "succeeded"
    [r3] = only(await q.turn(A, 3), "RunDispatched")
    assert r3.attempt == 0


async def test_max_retries_zero_abandons_at_the_first_failure():
    q = QueueDriver(max_retries=0)
    [r1] = only(await q.turn(A), "RunDispatched")
    assert types(await q.finished(r1.run_id, A, status="failed")) == ["RunReleased", "RunAbandoned"]


async def test_task_runs_are_not_retried():
    q = QueueDriver()
    [run] = only(await q.task(A, "task-1"), "RunDispatched")
    emitted = await q.finished(run.run_id, A, status="failed")
    assert types(emitted) == ["RunReleased"] and emitted[0].outcome == "failed"


async def test_an_interrupted_task_run_is_re_queued_once():
    q = QueueDriver()
    [run] = only(await q.task(A, "task-1"), "RunDispatched")
    emitted = await q.finished(run.run_id, A, status="failed", interrupted=True)
    assert types(emitted) == ["RunQueued", "RunReleased", "RunDispatched"]
    again = emitted[-1]
    assert (again.run_id, again.task_id, again.prompt) == (rerun_id(run.run_id), "task-1", "do task-1")
    assert types(await q.finished(again.run_id, A, status="failed", interrupted=True)) == ["RunReleased"]
    assert (await q.queue()).groups[A].tasks == []


async def test_an_interrupted_message_run_goes_through_the_normal_retry():
    q = QueueDriver()
    [run] = only(await q.turn(A), "RunDispatched")
    assert types(await q.finished(run.run_id, A, status="failed", interrupted=True)) == ["RunReleased", "RunRetryScheduled"]


async def test_events_for_runs_the_queue_does_not_run_are_ignored():
    q = QueueDriver()
    assert await q.finished("nope", A) == [] and await q.output("nope", A) == [] and await q.returned("nope", A) == []
    assert await q.events("RunQueueOpened") == []  # nothing decided, nothing stored
    [run] = only(await q.turn(A), "RunDispatched")
    await q.finished(run.run_id, A)
    assert await q.finished(run.run_id, A) == []  # a second report of the same end
    assert await q.output("other", A, status="error") == []


async def test_a_reload_from_the_log_reproduces_the_state():
    q = QueueDriver(cap=2)
    [a] = only(await q.turn(A), "RunDispatched")
    [b] = only(await q.turn(B), "RunDispatched")
    await q.turn(C)
    await q.output(a.run_id, A)
    await q.task(A, "task-1")
    await q.finished(b.run_id, B, status="failed")
    cached = await q.deps.repository.get(RunQueue, QUEUE_ID)
    fresh = await q.queue()
    assert (fresh.groups, fresh.waiting, fresh.recent) == (cached.groups, cached.waiting, cached.recent)
    assert fresh.groups[A].active.close_requested and fresh.groups[B].retries and fresh.groups[C].active


def test_the_queue_section_is_validated():
    assert QueueConfig().model_dump() == {"max_concurrent": 5, "max_retries": 5, "base_retry_ms": 5000,
                                          "idle_timeout_ms": 1_800_000, "task_close_delay_ms": 10_000,
                                          "close_timeout_ms": 120_000, "turn_gap_timeout_ms": 60_000}
    assert [QueueConfig().retry_delay_ms(n) for n in range(1, 6)] == [5000, 10000, 20000, 40000, 80000]
    for bad in ({"max_concurrent": 0}, {"max_concurent": 3}, {"base_retry_ms": 0},
                {"close_timeout_ms": 10}):
        with pytest.raises(ValidationError):
            QueueConfig.model_validate(bad)


def _turn_payload(jid):
    return AgentTurnRequested(turn_id="t-1", chat_jid=jid, group_folder="a", channel="whatsapp", prompt="p",
                              message_ids=["m1"], previous_cursor="", cursor="c")
