"""The re-planning timer's commit follower (services/harness/timer.py) on a real nats-server."""

from __future__ import annotations

import asyncio

from events.envelope import AggregateRef, new_commit
from events.tasks import cancel_and_wait
from services.harness.logging import get_logger
from services.harness.timer import replan_loop
from tests.clock import FakeClock
from tests.events.store_contract import CounterIncremented
from tests.support import eventually


async def test_a_bad_message_on_the_timers_subjects_wakes_it_like_any_commit_and_does_not_stop_it(nc, js_store):
    steps: list[int] = []

    async def step():
        steps.append(await js_store.last_seq())
        return None  # nothing due: wait for a change

    loop = asyncio.create_task(replan_loop("test", js_store, "nc.evt.test.counter.>", step, FakeClock(),
                                           get_logger("test")))
    try:
        await eventually(lambda: len(steps) == 1)
        await nc.jetstream().publish("nc.evt.test.counter.x.CounterIncremented", b'{"ok": true, "result": []}',
                                     stream="NC_EVENTS")
        await eventually(lambda: len(steps) == 2)
        commit = new_commit(AggregateRef("test", "counter", "y"), [CounterIncremented(by=1)], version=0, source="test")
        await js_store.append(commit, expected_seq=0)
        await eventually(lambda: steps[-1] == 2)
        assert not loop.done()
    finally:
        await cancel_and_wait([loop])
