"""The retry timer as a running task over an in-memory store, with a fake clock (no real waiting)."""

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
        await fail(q, A, 2)  # attempt 2: due in 10 s (t=15)
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
