"""NanoClaw v1 ``group-queue.test.ts`` (nanoclaw-behaviour §24.1), scenario by scenario, on the queue's handlers
with cap 2 as v1's tests. A v1 "call" of the run function is a ``RunDispatched`` here; v1's ``_close`` is a
``RunCloseRequested``; ``notifyIdle`` is a success ``AgentOutputProduced``; ``sendMessage`` a ``RunInputPiped``
(the queue pipes a turn into its group's idle run itself)."""

from __future__ import annotations

from events.catalogue.queue import message_run_id, task_run_id
from tests.queue.driver import QueueDriver, only, types

A, B, C = "a@g.us", "b@g.us", "c@g.us"


async def test_two_message_checks_for_one_group_never_run_at_once():
    q = QueueDriver()
    first = only(await q.turn(A, 1), "RunDispatched")
    assert types(await q.turn(A, 2)) == ["RunQueued"]  # the group is busy: it waits
    assert q_active(await q.queue()) == {A: first[0].run_id}
    [second] = only(await q.finished(first[0].run_id, A), "RunDispatched")
    assert second.run_id == message_run_id(f"{A}/t2") and len(await q.dispatched()) == 2


async def test_three_groups_with_cap_two_run_two_and_the_third_starts_when_one_completes():
    q = QueueDriver(cap=2)
    for jid in (A, B, C):
        await q.turn(jid)
    assert [d.chat_jid for d in await q.dispatched()] == [A, B]
    assert (await q.queue()).waiting == [C]
    a_run = (await q.dispatched())[0].run_id
    assert [d.chat_jid for d in only(await q.finished(a_run, A), "RunDispatched")] == [C]
    assert len(await q.dispatched()) == 3 and (await q.queue()).active_count == 2


async def test_a_task_runs_before_the_second_message_run_of_a_busy_group():
    q = QueueDriver()
    [busy] = only(await q.turn(A, 1), "RunDispatched")
    await q.task(A, "task-1")
    await q.turn(A, 2)
    [nxt] = only(await q.finished(busy.run_id, A), "RunDispatched")
    assert (nxt.kind, nxt.task_id) == ("task", "task-1")
    [last] = only(await q.finished(nxt.run_id, A), "RunDispatched")
    assert (last.kind, last.turn_ids) == ("message", [f"{A}/t2"])


async def test_a_run_that_always_fails_is_retried_after_5_then_10_seconds():
    q = QueueDriver()
    starts = []
    run = only(await q.turn(A, 1), "RunDispatched")[0]
    for n in (2, 3):
        starts.append(q.clock.elapsed_s)
        [retry] = only(await q.finished(run.run_id, A, status="failed"), "RunRetryScheduled")
        q.clock.advance(retry.delay_ms / 1000)
        assert await q.fire_timers() == [(A, n - 1)]
        run = (await q.dispatched())[-1]  # the queue retries the failed run's turn itself
        assert run.turn_ids == [f"{A}/t1"] and run.attempt == n - 1
    starts.append(q.clock.elapsed_s)
    assert starts == [0, 5, 15]  # +5 s, then +10 s
    assert len({d.run_id for d in await q.dispatched()}) == 3  # every retry is a new run


async def test_always_failing_means_six_runs_then_abandoned_and_nothing_more_after_200_seconds():
    q = QueueDriver()
    run = only(await q.turn(A, 1), "RunDispatched")[0]
    delays, n = [], 1
    while True:
        emitted = await q.finished(run.run_id, A, status="failed", error="boom")
        if only(emitted, "RunAbandoned"):
            break
        [retry] = only(emitted, "RunRetryScheduled")
        delays.append(retry.delay_ms)
        q.clock.advance(retry.delay_ms / 1000 - 0.001)
        assert await q.fire_timers() == []  # not due a millisecond early
        q.clock.advance(0.001)
        assert await q.fire_timers() == [(A, retry.attempt)]
        n += 1
        run = (await q.dispatched())[-1]
    assert delays == [5000, 10000, 20000, 40000, 80000]
    assert [d.attempt for d in await q.dispatched()] == [0, 1, 2, 3, 4, 5]
    [abandoned] = await q.events("RunAbandoned")
    assert abandoned.attempts == 6 and "boom" in abandoned.reason
    q.clock.advance(200)
    assert await q.fire_timers() == [] and len(await q.dispatched()) == 6
    assert (await q.queue()).groups[A].retry_count == 0  # reset: the next message starts afresh
    [fresh] = only(await q.turn(A, 2), "RunDispatched")  # ... and its run carries the abandoned turn first
    assert fresh.turn_ids == [f"{A}/t1", f"{A}/t2"] and fresh.attempt == 0


async def test_a_third_group_waits_while_the_slots_are_full_and_starts_when_one_frees():
    q = QueueDriver(cap=2)
    a = only(await q.turn(A), "RunDispatched")[0]
    only(await q.turn(B), "RunDispatched")
    assert only(await q.turn(C), "RunDispatched") == []
    b_done = await q.finished(a.run_id, A)
    assert [(type(p).__name__, getattr(p, "chat_jid")) for p in b_done] == [("RunReleased", A), ("RunDispatched", C)]


async def test_the_same_task_id_enqueued_while_it_runs_is_not_queued_again():
    q = QueueDriver()
    [run] = only(await q.task(A, "task-1", 1), "RunDispatched")
    assert await q.task(A, "task-1", 2) == []  # a new request for the running task: nothing recorded
    assert only(await q.finished(run.run_id, A), "RunDispatched") == []
    assert len(await q.dispatched()) == 1


async def test_a_task_for_a_busy_but_not_idle_message_run_closes_nothing():
    q = QueueDriver()
    await q.turn(A)
    assert types(await q.task(A, "task-1")) == ["RunQueued"]


async def test_a_task_for_an_idle_message_run_closes_it_exactly_once():
    q = QueueDriver()
    [run] = only(await q.turn(A), "RunDispatched")
    assert types(await q.output(run.run_id, A)) == ["RunIdled"]
    assert types(await q.task(A, "task-1")) == ["RunQueued", "RunCloseRequested"]
    assert types(await q.task(A, "task-2")) == ["RunQueued"]  # already closing
    [close] = await q.events("RunCloseRequested")
    assert (close.run_id, close.reason) == (run.run_id, "task_waiting")


async def test_a_turn_for_an_idle_run_is_piped_into_it_and_keeps_it_open_for_a_later_task():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    await q.output(run.run_id, A)
    [piped] = only(await q.turn(A, 2), "RunInputPiped")
    assert (piped.run_id, piped.turn_ids, piped.message_ids, piped.prompt) == (run.run_id, [f"{A}/t2"], ["m2"], "prompt 2")
    assert types(await q.task(A, "task-1")) == ["RunQueued"]  # running again: the task waits for its idle
    assert await q.events("RunCloseRequested") == []
    assert types(await q.output(run.run_id, A)) == ["RunIdled", "RunCloseRequested"]


async def test_a_task_run_takes_no_piped_input_and_a_waiting_turn_closes_it_once_it_has_its_result():
    q = QueueDriver()
    [run] = only(await q.task(A, "task-1"), "RunDispatched")
    assert types(await q.turn(A, 1)) == ["RunQueued"]  # the task is still starting: the turn waits
    assert types(await q.output(run.run_id, A)) == ["RunIdled", "RunCloseRequested"]
    assert await q.events("RunInputPiped") == []
    [close] = await q.events("RunCloseRequested")
    assert close.reason == "turn_waiting"
    [nxt] = only(await q.finished(run.run_id, A), "RunDispatched")
    assert nxt.turn_ids == [f"{A}/t1"]


async def test_a_task_queued_while_busy_closes_the_run_once_it_idles():
    q = QueueDriver()
    [run] = only(await q.turn(A), "RunDispatched")
    assert types(await q.task(A, "task-1")) == ["RunQueued"]
    assert types(await q.output(run.run_id, A)) == ["RunIdled", "RunCloseRequested"]
    assert await q.output(run.run_id, A) == []  # a second result: still one close
    [nxt] = only(await q.finished(run.run_id, A), "RunDispatched")
    assert nxt.run_id == task_run_id("task-1/run1")


def q_active(queue) -> dict[str, str]:
    return {jid: g.active.run_id for jid, g in queue.groups.items() if g.active}
