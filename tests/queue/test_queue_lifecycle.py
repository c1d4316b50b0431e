"""The run lifecycle the queue owns (issue 13): starting → idle ⇄ running → closing → finished, on the queue's
pure handlers. Input offered while a run starts or works is held in the queue and piped, in order and within the
router's batch limit, when the run idles; input that misses its run goes back to the front; a failed run's
unanswered turns are retried, answered ones never are."""

from __future__ import annotations

from tests.queue.driver import QueueDriver, only, types

A, B, C = "a@g.us", "b@g.us", "c@g.us"


def state(q_state, jid: str) -> str | None:
    a = q_state.groups[jid].active
    return a.state if a else None


async def test_a_run_goes_starting_idle_running_idle_closing_finished():
    q = QueueDriver(idle_timeout_ms=1_000)
    [run] = only(await q.turn(A, 1), "RunDispatched")
    assert state(await q.queue(), A) == "starting"
    await q.output(run.run_id, A, idle=True)
    assert state(await q.queue(), A) == "idle"
    await q.turn(A, 2)
    assert state(await q.queue(), A) == "running"
    await q.output(run.run_id, A, idle=True)
    q.clock.advance(1)
    await q.fire_timers()
    assert state(await q.queue(), A) == "closing"
    await q.finished(run.run_id, A)
    assert state(await q.queue(), A) is None and (await q.queue()).groups[A].messages == []


async def test_turns_offered_while_the_run_starts_are_held_and_piped_together_in_order_when_it_idles():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    for n in (2, 3, 4):
        assert types(await q.turn(A, n)) == ["RunQueued"]  # held: never pushed at a starting agent
    emitted = await q.output(run.run_id, A, idle=True)
    assert types(emitted) == ["RunIdled", "RunInputPiped"]
    [piped] = only(emitted, "RunInputPiped")
    assert piped.turn_ids == [f"{A}/t2", f"{A}/t3", f"{A}/t4"] and piped.message_ids == ["m2", "m3", "m4"]
    assert piped.prompt == "prompt 2\nprompt 3\nprompt 4"


async def test_waiting_turns_are_joined_only_within_the_batch_limit():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1, batch_limit=10), "RunDispatched")
    await q.turn(A, 2, messages=6, batch_limit=10)
    await q.turn(A, 3, messages=6, batch_limit=10)
    [first] = only(await q.output(run.run_id, A, idle=True), "RunInputPiped")
    assert first.turn_ids == [f"{A}/t2"]  # 6 + 6 > 10: the next query gets the other one
    [second] = only(await q.output(run.run_id, A, idle=True), "RunInputPiped")
    assert second.turn_ids == [f"{A}/t3"]


async def test_a_dispatch_after_a_busy_run_joins_waiting_turns_within_the_batch_limit():
    q = QueueDriver()
    [task] = only(await q.task(A, "task-1"), "RunDispatched")
    for n in (1, 2, 3):
        await q.turn(A, n, messages=4, batch_limit=10)
    [run] = only(await q.finished(task.run_id, A), "RunDispatched")
    assert run.turn_ids == [f"{A}/t1", f"{A}/t2"]
    assert (await q.queue()).groups[A].messages[0].turn_id == f"{A}/t3"


async def test_piped_turns_the_run_could_not_take_go_back_to_the_front_and_the_next_run_takes_them_at_once():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    await q.output(run.run_id, A, idle=True)
    [piped] = only(await q.turn(A, 2), "RunInputPiped")
    await q.turn(A, 3)
    assert types(await q.returned(run.run_id, A, piped.queued_run_ids)) == ["RunInputRequeued", "RunCloseRequested"]
    assert (await q.events("RunCloseRequested"))[0].reason == "input_returned"
    [nxt] = only(await q.finished(run.run_id, A), "RunDispatched")
    assert nxt.turn_ids == [f"{A}/t2", f"{A}/t3"] and nxt.attempt == 0  # in order, no backoff
    assert await q.returned(run.run_id, A, piped.queued_run_ids) == []  # a repeat changes nothing


async def test_a_failed_run_retries_only_its_unanswered_turns_before_newer_ones():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    await q.output(run.run_id, A, idle=True)  # turn 1 answered
    await q.turn(A, 2)  # piped
    await q.turn(A, 3)  # waits
    emitted = await q.finished(run.run_id, A, status="failed", output_delivered=True)
    assert types(emitted) == ["RunReleased", "RunRetryScheduled", "RunDispatched"]
    [again] = only(emitted, "RunDispatched")  # a turn already waits: as v1, it does not wait for the backoff
    assert again.turn_ids == [f"{A}/t2", f"{A}/t3"] and again.run_id != run.run_id and again.attempt == 1


async def test_a_failed_run_with_nothing_else_waiting_is_retried_after_the_backoff():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    [retry] = only(await q.finished(run.run_id, A, status="failed"), "RunRetryScheduled")
    assert (await q.queue()).groups[A].held[0].turn_id == f"{A}/t1"
    q.clock.advance(retry.delay_ms / 1000)
    await q.fire_timers()
    again = (await q.dispatched())[-1]
    assert again.turn_ids == [f"{A}/t1"] and again.run_id != run.run_id


async def test_a_new_turn_during_the_backoff_starts_the_retry_early_and_keeps_the_order():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    await q.finished(run.run_id, A, status="failed")
    [early] = only(await q.turn(A, 2), "RunDispatched")
    assert early.turn_ids == [f"{A}/t1", f"{A}/t2"] and early.attempt == 1
    q.clock.advance(5)
    await q.fire_timers()
    assert len(await q.dispatched()) == 2  # the due retry finds nothing left to run


async def test_a_succeeded_run_that_left_a_piped_turn_unanswered_hands_it_to_the_next_run_at_once():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    await q.output(run.run_id, A, idle=True)
    await q.turn(A, 2)  # piped, then the run ended (e.g. a hard timeout after output)
    [nxt] = only(await q.finished(run.run_id, A), "RunDispatched")
    assert nxt.turn_ids == [f"{A}/t2"] and await q.events("RunRetryScheduled") == []


async def test_an_idle_run_is_closed_at_once_when_another_group_wants_its_slot():
    q = QueueDriver(cap=2)
    [a] = only(await q.turn(A), "RunDispatched")
    [b] = only(await q.turn(B), "RunDispatched")
    await q.output(a.run_id, A, idle=True)
    emitted = await q.turn(C)
    assert [(type(p).__name__, getattr(p, "reason", None)) for p in emitted] == [
        ("RunQueued", None), ("RunCloseRequested", "slot_wanted")]
    [c] = only(await q.finished(a.run_id, A), "RunDispatched")
    assert c.chat_jid == C


async def test_a_legacy_agent_without_idle_marks_counts_every_success_as_idle():
    q = QueueDriver()
    [run] = only(await q.turn(A, 1), "RunDispatched")
    await q.turn(A, 2)
    assert types(await q.output(run.run_id, A)) == ["RunIdled", "RunInputPiped"]
