"""The queue service on a real nats-server: triggers in the log → dispatches; restarts and redeliveries never
dispatch twice; retries survive a restart. Time is a fake clock."""

from __future__ import annotations

from functools import partial

from events.catalogue.agent import AgentRunFinished
from events.catalogue.router import AgentTurnRequested
from services.harness.emit import append_emit
from services.harness.service import Emit
from events.catalogue.queue import message_run_id
from services.queue.service import build
from tests.bus import context, events_of, running, settings
from tests.clock import FakeClock
from tests.queue.driver import folder
from tests.support import eventually, has_at_least

A, B, C = "a@g.us", "b@g.us", "c@g.us"


async def request_turn(store, jid: str, turn_id: str, msg_id: str | None = None, seq: int | None = None) -> None:
    turn = AgentTurnRequested(turn_id=turn_id, chat_jid=jid, group_folder=folder(jid), channel="whatsapp",
                              prompt=f"prompt {turn_id}", message_ids=["m"], previous_cursor="", cursor="c", seq=seq)
    await append_emit(store, Emit.append(jid, turn), source="router", msg_id=msg_id or f"turn:{turn_id}")


async def finish(store, jid: str, run_id: str, status: str = "succeeded") -> None:
    fin = AgentRunFinished(run_id=run_id, chat_jid=jid, group_folder=folder(jid), status=status)  # type: ignore[arg-type]
    await append_emit(store, Emit.append(run_id, fin), source="runner", msg_id=f"fin:{run_id}")


async def dispatched(store) -> list:
    return await events_of(store, "RunDispatched")


async def settled(runner) -> bool:
    info = await runner.nc.jetstream().consumer_info("NC_EVENTS", "svc_queue")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_turns_are_dispatched_up_to_the_cap_and_a_finished_run_frees_its_slot(js_store, nc, tmp_path):
    s = settings(tmp_path, queue={"max_concurrent": 2})
    async with running(partial(build, clock=FakeClock()), context(nc, js_store, s)) as runner:
        for jid in (A, B, C):
            await request_turn(js_store, jid, f"{jid}/t1")
        await eventually(lambda: has_at_least(dispatched(js_store), 2))
        await eventually(lambda: settled(runner))
        assert [d.chat_jid for d in await dispatched(js_store)] == [A, B]
        await finish(js_store, A, message_run_id(f"{A}/t1"))
        await eventually(lambda: has_at_least(dispatched(js_store), 3))
    assert [d.chat_jid for d in await dispatched(js_store)] == [A, B, C]
    [released] = await events_of(js_store, "RunReleased")
    assert (released.chat_jid, released.outcome) == (A, "succeeded")


async def test_the_same_turn_appended_twice_is_dispatched_once(js_store, nc, tmp_path):
    async with running(partial(build, clock=FakeClock()), context(nc, js_store, settings(tmp_path))) as runner:
        await request_turn(js_store, A, "t1", msg_id="first")
        await request_turn(js_store, A, "t1", msg_id="second")  # a second event for the same turn
        await eventually(lambda: has_at_least(dispatched(js_store), 1))
        await eventually(lambda: settled(runner))
    assert len(await events_of(js_store, "AgentTurnRequested")) == 2
    assert len(await dispatched(js_store)) == 1 and len(await events_of(js_store, "RunQueued")) == 1


async def test_a_restart_reloads_the_queue_dispatches_nothing_twice_and_keeps_pending_retries(js_store, nc, tmp_path):
    clock = FakeClock()
    ctx = context(nc, js_store, settings(tmp_path, queue={"max_concurrent": 2}))
    a1, b1, c1 = (message_run_id(f"{j}/t1") for j in (A, B, C))
    async with running(partial(build, clock=clock), ctx) as runner:
        for jid in (A, B, C):
            await request_turn(js_store, jid, f"{jid}/t1")
        await eventually(lambda: has_at_least(dispatched(js_store), 2))
        await finish(js_store, A, a1, status="failed")  # retry in 5 s; C takes A's slot
        await eventually(lambda: has_at_least(dispatched(js_store), 3))
        await eventually(lambda: settled(runner))
    # Stopped: nothing is killed or closed; what happens meanwhile waits in the log (v1 detaches on shutdown).
    await finish(js_store, B, b1)
    await request_turn(js_store, B, f"{B}/t2")
    clock.advance(5)
    assert await events_of(js_store, "MessageRetryDue") == []
    async with running(partial(build, clock=clock), ctx) as runner:
        await eventually(lambda: has_at_least(events_of(js_store, "MessageRetryDue"), 1))
        await eventually(lambda: has_at_least(dispatched(js_store), 4))
        await finish(js_store, C, c1)  # the due retry re-runs A's turn itself, once a slot is free
        await eventually(lambda: has_at_least(dispatched(js_store), 5))
        await eventually(lambda: settled(runner))
    runs = await dispatched(js_store)
    assert [(d.chat_jid, d.attempt) for d in runs] == [(A, 0), (B, 0), (C, 0), (B, 0), (A, 1)]
    assert len({d.run_id for d in runs}) == 5 and runs[-1].turn_ids == [f"{A}/t1"]
    [due] = await events_of(js_store, "MessageRetryDue")
    assert (due.chat_jid, due.attempt) == (A, 1)
    assert len(await events_of(js_store, "RunQueueOpened")) == 1
    assert await events_of(js_store, "MessageDeadLettered") == []  # races with the timer were retried, not lost


async def test_a_larger_cap_after_a_restart_starts_waiting_groups_at_once(js_store, nc, tmp_path):
    clock = FakeClock()
    def ctx(cap):
        return context(nc, js_store, settings(tmp_path, queue={"max_concurrent": cap}))
    async with running(partial(build, clock=clock), ctx(1)) as r:
        for jid in (A, B):
            await request_turn(js_store, jid, f"{jid}/t1")
        await eventually(lambda: has_at_least(dispatched(js_store), 1))
        await eventually(lambda: settled(r))
    async with running(partial(build, clock=clock), ctx(2)):
        await eventually(lambda: has_at_least(dispatched(js_store), 2))
    assert [d.chat_jid for d in await dispatched(js_store)] == [A, B]


async def test_a_run_that_failed_on_the_claude_credential_is_abandoned_at_once_while_an_ordinary_failure_is_retried(
        js_store, nc, tmp_path):
    from events.catalogue.broker import ModelCredentialFailed

    async with running(partial(build, clock=FakeClock()), context(nc, js_store, settings(tmp_path))) as runner:
        await request_turn(js_store, A, f"{A}/t1")
        await request_turn(js_store, B, f"{B}/t1")
        await eventually(lambda: has_at_least(dispatched(js_store), 2))
        a1, b1 = message_run_id(f"{A}/t1"), message_run_id(f"{B}/t1")
        rejected = ModelCredentialFailed(run_id=a1, group_folder=folder(A), problem="rejected", status=401)
        await append_emit(js_store, Emit.append(a1, rejected), source="broker", msg_id="cred-a1")
        await finish(js_store, A, a1, status="failed")
        await finish(js_store, B, b1, status="failed")
        await eventually(lambda: has_at_least(events_of(js_store, "RunRetryScheduled"), 1))
        await eventually(lambda: settled(runner))
    [abandoned] = await events_of(js_store, "RunAbandoned")
    assert (abandoned.chat_jid, abandoned.run_id, abandoned.attempts) == (A, a1, 1)
    assert "credential rejected (HTTP 401)" in abandoned.reason
    assert [r.chat_jid for r in await events_of(js_store, "RunRetryScheduled")] == [B]


async def test_a_turn_a_killed_queue_had_fetched_but_not_acked_still_goes_before_the_later_turns(js_store, nc, tmp_path):
    """Found by the fault campaign: after a queue SIGKILL, the turn the dead queue had fetched comes back only
    after the ack wait, while the restarted queue already receives the chat's next turn. The later turn must wait
    (the turns carry their ordinal in the chat) and both go to the model in the router's order."""
    clock = FakeClock()
    ctx = context(nc, js_store, settings(tmp_path))
    async with running(partial(build, clock=clock), ctx) as runner:
        await request_turn(js_store, A, f"{A}/t1", seq=1)
        await eventually(lambda: has_at_least(dispatched(js_store), 1))
        await finish(js_store, A, message_run_id(f"{A}/t1"))
        await eventually(lambda: settled(runner))
    await request_turn(js_store, A, f"{A}/t2", seq=2)
    await request_turn(js_store, A, f"{A}/t3", seq=3)
    # The queue that is about to die fetches turn 2 from its consumer and never acks it.
    dying = await nc.jetstream().pull_subscribe_bind("svc_queue", stream="NC_EVENTS")
    [fetched] = await dying.fetch(1, timeout=5)
    assert f"{A}/t2".encode() in fetched.data
    await dying.unsubscribe()
    async with running(partial(build, clock=clock), ctx) as runner:
        await eventually(lambda: has_at_least(dispatched(js_store), 2))  # after the ack wait brought turn 2 back
        await eventually(lambda: settled(runner))
    first, second = await dispatched(js_store)
    assert second.turn_ids == [f"{A}/t2", f"{A}/t3"]
    assert len(await events_of(js_store, "RunDispatched")) == 2


async def test_a_piped_turn_answered_before_the_run_died_is_not_retried_while_one_it_only_took_is(js_store, nc, tmp_path):
    """Found by the long fault campaign: the runner was SIGKILLed after the agent's reply to a piped turn went
    out but before its idle marker; the queue retried that turn and the person got the answer twice (v1: no
    retry once output reached the user). A turn the agent only took, with no answer yet, is still retried."""
    from events.catalogue.agent import AgentInputDelivered, AgentOutputProduced

    async def run_events(run_id: str, key: str, *payloads) -> None:
        for i, payload in enumerate(payloads):
            await append_emit(js_store, Emit.append(run_id, payload), source="runner", msg_id=f"{run_id}:{key}:{i}")

    def output(jid: str, run_id: str, text: str | None, idle: bool) -> AgentOutputProduced:
        return AgentOutputProduced(run_id=run_id, chat_jid=jid, group_folder=folder(jid), text=text, idle=idle)

    def taken(jid: str, run_id: str, turn_id: str) -> AgentInputDelivered:
        return AgentInputDelivered(run_id=run_id, chat_jid=jid, group_folder=folder(jid), message_ids=["m"],
                                   turn_ids=[turn_id])

    async with running(partial(build, clock=FakeClock()), context(nc, js_store, settings(tmp_path))) as runner:
        for jid in (A, B):
            await request_turn(js_store, jid, f"{jid}/t1", seq=1)
        await eventually(lambda: has_at_least(dispatched(js_store), 2))
        runs = {jid: message_run_id(f"{jid}/t1") for jid in (A, B)}
        for jid, run_id in runs.items():
            await run_events(run_id, "t1", output(jid, run_id, "answer 1", False), output(jid, run_id, None, True))
        await eventually(lambda: has_at_least(events_of(js_store, "RunIdled"), 2))
        for jid in (A, B):
            await request_turn(js_store, jid, f"{jid}/t2", seq=2)
        await eventually(lambda: has_at_least(events_of(js_store, "RunInputPiped"), 2))
        # A's agent took turn 2 and its answer went out; B's took it and died before answering. No idle marker.
        await run_events(runs[A], "t2", taken(A, runs[A], f"{A}/t2"),
                         output(A, runs[A], "<internal>x</internal>answer 2", False))
        await run_events(runs[B], "t2", taken(B, runs[B], f"{B}/t2"),
                         output(B, runs[B], "<internal>thinking</internal>", False))  # nothing of it reaches the user
        for jid in (A, B):
            await finish(js_store, jid, runs[jid], status="failed")
        await eventually(lambda: has_at_least(events_of(js_store, "RunReleased"), 2))
        await eventually(lambda: settled(runner))
    released = {r.chat_jid: r.outcome for r in await events_of(js_store, "RunReleased")}
    assert released == {A: "succeeded", B: "failed"}
    assert [r.chat_jid for r in await events_of(js_store, "RunRetryScheduled")] == [B]
