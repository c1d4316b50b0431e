"""A service task that sleeps until its next due time and re-plans whenever its aggregates change.

Used by the queue's retry clock and the scheduler: the plan is always recomputed from the event log (never
from in-memory timers), so a restarted service re-plans from its state and work that fell due while it was
down is done at once. Time comes from a :class:`services.harness.clock.Clock`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Awaitable, Callable

from events.errors import ConcurrencyError, EventStoreError
from events.tasks import cancel_and_wait
from services.harness.clock import Clock

STORE_RETRY_S = 1.0

Step = Callable[[], Awaitable[datetime | None]]


async def replan_loop(name: str, store, subject_filter: str, step: Step, clock: Clock, log) -> None:
    """Run ``step`` (do what is due; return when to run again, or None to wait for a change) until cancelled.

    ``step`` runs again at once when it returns a time already reached, when an event store conflict ends
    it (someone else moved first: re-plan), or 1 s after the store was unreachable. Any commit on
    ``subject_filter`` wakes the loop early.

    Raises: RuntimeError when the commit follower ends (the service turns unhealthy).
    """
    changed = asyncio.Event()
    follower = asyncio.create_task(_follow(store, await store.last_seq(), subject_filter, changed),
                                   name=f"{name}-follow")
    try:
        while True:
            changed.clear()  # before planning: a commit stored meanwhile sets it again, so none is missed
            try:
                wake = await step()
            except ConcurrencyError:
                log.info("state moved on while acting; re-planning", timer=name)
                continue
            except EventStoreError as exc:  # briefly unreachable: the plan is still in the log
                log.warning("cannot reach the event store; retrying", timer=name, error=str(exc),
                            retry_in_s=STORE_RETRY_S)
                await asyncio.sleep(STORE_RETRY_S)
                continue
            if wake is not None and wake <= clock.now():
                await asyncio.sleep(0)  # let other tasks run between back-to-back steps
                continue
            await _wait(name, changed, follower, clock.sleep_until(wake) if wake is not None else None)
    finally:
        await cancel_and_wait([follower])


async def _follow(store, after_seq: int, subject_filter: str, changed: asyncio.Event) -> None:
    # Raw, not decoded: the follower only signals a change, and a message in the log that is not a valid commit
    # must not end it (decoding raised, and the timer stopped for good).
    async for _ in store.read_raw(after_seq=after_seq, subject_filter=subject_filter, follow=True):
        changed.set()


async def _wait(name: str, changed: asyncio.Event, follower: asyncio.Task, sleep) -> None:
    """Until a change or the sleep ends. Raises what ended the follower."""
    waiters = {asyncio.create_task(changed.wait())}
    if sleep is not None:
        waiters.add(asyncio.create_task(sleep))
    try:
        await asyncio.wait(waiters | {follower}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in waiters:
            t.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    if follower.done():
        follower.result()
        raise RuntimeError(f"the {name} timer's commit follower ended")
