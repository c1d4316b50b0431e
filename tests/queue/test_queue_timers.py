"""The queue's timer (retries and idle runs) as a running task over an in-memory store, with a fake clock (no
real waiting)."""

from __future__ import annotations

import asyncio
import contextlib

from services.queue.timers import retry_timer
from tests.queue.driver import QueueDriver, only
from tests.support import eventually, has_at_least

A, B = "a@g.us", "b@g.us"


@contextlib.asynccontextmanager
async def timer(q: QueueDriver):
    task = asyncio.create_task(retry_timer(q.deps))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()  # it ran until stopped: no error ended it


async def retries_due(q: QueueDriver) -> list[tuple[str, int]]:
    return [(e.chat_jid, e.attempt) for e in await q.events("MessageRetryDue")]


async def fail(q: QueueDriver, jid: str, n: int) -> None:
    [run] = only(await q.turn(jid, n), "RunDispatched")
    await q.finished(run.run_id, jid, status="failed")


async def test_a_scheduled_retry_becomes_due_when_the_clock_reaches_it():
    q = QueueDriver()
    async with timer(q):
        await fail(q, A, 1)
        q.clock.advance(5)
        await eventually(lambda: has_at_least(retries_due(q), 1))
    assert await retries_due(q) == [(A, 1)]
    assert (await q.queue()).scheduled_retries() == []


async def test_an_earlier_retry_scheduled_while_sleeping_re_plans_the_timer():
    q = QueueDriver()
    async with timer(q):
        await fail(q, A, 1)
        q.clock.advance(5)
        await eventually(lambda: has_at_least(retries_due(q), 1))
        [retry] = [d for d in await q.dispatched() if d.attempt == 1]  # the queue re-ran A's turn at once
        await q.finished(retry.run_id, A, status="failed")  # attempt 2: due in 10 s (t=15)
        await fail(q, B, 1)  # attempt 1: due in 5 s (t=10), earlier than the timer's current plan
        q.clock.advance(5)
        await eventually(lambda: has_at_least(retries_due(q), 2))
        assert await retries_due(q) == [(A, 1), (B, 1)]  # A's second retry is not due before t=15
        q.clock.advance(5)
        await eventually(lambda: has_at_least(retries_due(q), 3))
    assert await retries_due(q) == [(A, 1), (B, 1), (A, 2)]


async def test_a_restarted_timer_fires_a_retry_that_fell_due_while_it_was_down():
    q = QueueDriver()
    async with timer(q):
        await fail(q, A, 1)
    q.clock.advance(60)
    assert await retries_due(q) == []
    async with timer(q):
        await eventually(lambda: has_at_least(retries_due(q), 1))
    assert await retries_due(q) == [(A, 1)]


async def closes(q: QueueDriver) -> list[tuple[str, str]]:
    return [(e.chat_jid, e.reason) for e in await q.events("RunCloseRequested")]


async def test_an_idle_message_run_is_closed_by_the_queue_after_the_idle_timeout_and_not_a_moment_before():
    q = QueueDriver(idle_timeout_ms=60_000, task_close_delay_ms=2_000)
    async with timer(q):
        [run] = only(await q.turn(A, 1), "RunDispatched")
        await q.output(run.run_id, A, idle=True)
        [task] = only(await q.task(B, "task-1"), "RunDispatched")
        await q.output(task.run_id, B, idle=True)
        q.clock.advance(2)
        await eventually(lambda: has_at_least(closes(q), 1))
        assert await closes(q) == [(B, "task_done")]  # the task run's short delay; the message run still idles
        q.clock.advance(58)
        await eventually(lambda: has_at_least(closes(q), 2))
    assert await closes(q) == [(B, "task_done"), (A, "idle_timeout")]


async def test_a_result_mid_query_does_not_start_the_idle_timer():
    q = QueueDriver(idle_timeout_ms=1_000)
    async with timer(q):
        [run] = only(await q.turn(A, 1), "RunDispatched")
        assert await q.output(run.run_id, A, idle=False) == []  # a result, but the agent still works
        q.clock.advance(10)
        assert only(await q.turn(A, 2), "RunInputPiped") == []  # not idle: the turn waits in the queue
        assert [type(p).__name__ for p in await q.output(run.run_id, A, idle=True, text=None)] == [
            "RunIdled", "RunInputPiped"]
        assert await closes(q) == []
