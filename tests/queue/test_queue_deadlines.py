"""What keeps a group from being held forever or answered out of order (issue 13, found by the fault
campaign): a run asked to close must end or be released by the queue's close deadline; a chat's turn that
arrives ahead of an earlier one (a crashed queue's unacked turn comes back only after the ack wait) is held until
the earlier one is queued, or until the gap wait ends. On the queue's handlers and timer, with a fake clock."""

from __future__ import annotations

from tests.queue.driver import QueueDriver, only, types
from tests.queue.test_queue_timers import timer
from tests.support import eventually, has_at_least

A = "a@g.us"


async def test_a_run_that_never_ends_after_its_close_is_released_at_the_close_deadline_and_the_chat_goes_on():
    q = QueueDriver(close_timeout_ms=60_000)
    [run] = only(await q.turn(A, 1, seq=1), "RunDispatched")
    await q.output(run.run_id, A, idle=True)
    [piped] = only(await q.turn(A, 2, seq=2), "RunInputPiped")
    # the agent could not take it (nats-server restarted; it has not resubscribed), and the close cannot reach it
    assert types(await q.returned(run.run_id, A, piped.queued_run_ids)) == ["RunInputRequeued", "RunCloseRequested"]
    assert only(await q.turn(A, 3, seq=3), "RunDispatched") == []  # held by the closing run
    q.clock.advance(59)
    await q.fire_timers()
    assert await q.events("RunCloseTimedOut") == []  # not a moment before the deadline
    q.clock.advance(1)
    await q.fire_timers()
    [timed_out] = await q.events("RunCloseTimedOut")
    assert (timed_out.run_id, timed_out.waited_ms) == (run.run_id, 60_000)
    [released] = await q.events("RunReleased")
    assert released.outcome == "succeeded"  # it had answered everything it took: nothing to retry
    [nxt] = [d for d in await q.dispatched() if d.run_id != run.run_id]
    assert nxt.turn_ids == [f"{A}/t2", f"{A}/t3"]  # the returned turn first, at once
    assert await q.finished(run.run_id, A) == []  # the old run's late end changes nothing


async def test_a_closing_run_released_by_the_deadline_frees_its_group_for_the_waiting_task():
    q = QueueDriver(close_timeout_ms=1_000, task_close_delay_ms=0)
    [run] = only(await q.turn(A, 1, seq=1), "RunDispatched")
    await q.task(A, "task-1")  # a task waits: the run is closed as soon as it idles
    await q.output(run.run_id, A, idle=True)
    assert (await q.events("RunCloseRequested"))[0].reason == "task_waiting"
    q.clock.advance(1)
    await q.fire_timers()
    assert len(await q.events("RunCloseTimedOut")) == 1
    assert [d.kind for d in await q.dispatched()] == ["message", "task"]  # the group is free: the task runs


async def test_the_close_deadline_fires_from_the_running_timer():
    q = QueueDriver(close_timeout_ms=5_000)
    async with timer(q):
        [run] = only(await q.turn(A, 1, seq=1), "RunDispatched")
        await q.output(run.run_id, A, idle=True)
        [piped] = only(await q.turn(A, 2, seq=2), "RunInputPiped")
        await q.returned(run.run_id, A, piped.queued_run_ids)
        q.clock.advance(5)
        await eventually(lambda: has_at_least(q.events("RunCloseTimedOut"), 1))
        await eventually(lambda: has_at_least(q.dispatched(), 2))


async def test_a_turn_that_arrives_before_an_earlier_one_of_its_chat_waits_for_it_and_both_go_in_order():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1, seq=1), "RunDispatched")
    await q.output(run.run_id, A, idle=True)
    # turn 2 was fetched by a queue that died before acking it; the restarted queue sees turn 3 first
    assert types(await q.turn(A, 3, seq=3)) == ["RunQueued"]  # held: not piped into the idle run
    emitted = await q.turn(A, 2, seq=2)  # the redelivery after the ack wait
    [piped] = only(emitted, "RunInputPiped")
    assert piped.turn_ids == [f"{A}/t2", f"{A}/t3"] and piped.prompt == "prompt 2\nprompt 3"


async def test_a_new_chat_whose_first_turn_is_late_starts_with_it():
    q = QueueDriver()
    assert types(await q.turn(A, 2, seq=2)) == ["RunQueueOpened", "RunQueued"]  # held: no dispatch
    [run] = only(await q.turn(A, 1, seq=1), "RunDispatched")
    assert run.turn_ids == [f"{A}/t1", f"{A}/t2"]


async def test_a_gap_that_never_fills_is_skipped_with_an_event_after_the_gap_wait():
    q = QueueDriver(turn_gap_timeout_ms=30_000)
    async with timer(q):
        [run] = only(await q.turn(A, 1, seq=1), "RunDispatched")
        await q.output(run.run_id, A, idle=True)
        await q.turn(A, 4, seq=4)
        q.clock.advance(29)
        await q.turn(A, 5, seq=5)
        assert await q.events("TurnGapSkipped") == [] and await q.events("RunInputPiped") == []
        q.clock.advance(1)
        await eventually(lambda: has_at_least(q.events("TurnGapSkipped"), 1))
        await eventually(lambda: has_at_least(q.events("RunInputPiped"), 1))
    [gap] = await q.events("TurnGapSkipped")
    assert (gap.missing_from, gap.missing_to, gap.waited_ms) == (2, 3, 30_000)
    [piped] = await q.events("RunInputPiped")
    assert piped.turn_ids == [f"{A}/t4", f"{A}/t5"]
    # a missing turn that turns up after all is still answered, never dropped
    assert types(await q.turn(A, 2, seq=2)) == ["RunQueued"]
    assert [t.turn_id for t in (await q.queue()).groups[A].messages] == [f"{A}/t2"]


async def test_turns_of_older_logs_without_an_ordinal_keep_arrival_order():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    await q.output(run.run_id, A, idle=True)
    [piped] = only(await q.turn(A, 3), "RunInputPiped")
    assert piped.turn_ids == [f"{A}/t3"]
