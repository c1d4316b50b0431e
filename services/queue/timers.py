"""The retry clock: turns each due ``RunRetryScheduled`` into ``MessageRetryDue`` (v1 scheduleRetry's setTimeout).

The plan is the queue's state (retries scheduled and not yet due), so a restarted service re-plans from the
reloaded aggregate and a retry that fell due while it was down fires at once. The task follows the queue
aggregate's commits to re-plan when the state changes. Time comes from an injectable :class:`Clock`, so tests
move time by hand and never wait for real.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from events.catalogue.types import iso_utc
from events.errors import ConcurrencyError, EventStoreError
from services.harness.clock import parse_time
from services.harness.logging import get_logger
from services.harness.emit import append_emit
from services.harness.service import Emit
from services.queue.runqueue import QUEUE_ID, RunQueue

if TYPE_CHECKING:
    from services.queue.handlers import QueueDeps

log = get_logger("nanoclaw.queue", service="queue")
_STORE_RETRY_S = 1.0


def next_due(queue: RunQueue | None) -> datetime | None:
    """When the earliest scheduled retry without a ``MessageRetryDue`` falls due (None: nothing scheduled)."""
    retries = queue.scheduled_retries() if queue else []
    return parse_time(retries[0][0]) if retries else None


async def fire_due(deps: "QueueDeps") -> list[tuple[str, int]]:
    """Append one ``MessageRetryDue`` per retry due by ``deps.clock.now()``, in one commit. Returns the fired
    ``(chat_jid, attempt)`` pairs. The message id is keyed on the queue position the decision was based on,
    so two timers deciding on the same state store one commit.

    Raises:
        ConcurrencyError: the queue moved on meanwhile (the caller re-plans and tries again).
    """
    queue = await deps.repository.get(RunQueue, QUEUE_ID)
    if queue is None:
        return []
    now = iso_utc(deps.clock.now())
    due = [(jid, n) for at, jid, n in queue.scheduled_retries() if at <= now]  # ISO UTC strings sort as times
    for jid, n in due:
        queue.retry_due(jid, n)
    emit = Emit.of(queue)
    if emit is not None:
        await append_emit(deps.repository.store, emit, source=deps.repository.source,
                          msg_id=f"queue-retry-due:{emit.expected_seq}")
        log.info("message retries due", retries=due)
    return due


async def retry_timer(deps: "QueueDeps") -> None:
    """The service task: sleep until the next retry is due, fire it, re-plan on every queue commit. Runs until
    cancelled (service stop)."""
    store = deps.repository.store
    changed = asyncio.Event()
    follower = asyncio.create_task(_follow(store, await store.last_seq(), changed), name="queue-follow")
    try:
        while True:
            changed.clear()  # before loading: a commit stored while we load sets it again, so none is missed
            try:
                due = next_due(await deps.repository.get(RunQueue, QUEUE_ID))
                if due is not None and due <= deps.clock.now():
                    await fire_due(deps)
                    continue
            except ConcurrencyError:
                log.info("the queue moved on while firing a retry; re-planning")
                continue
            except EventStoreError as exc:  # the store is briefly unreachable: the plan is still in the log
                log.warning("cannot read the queue; retrying", error=str(exc), retry_in_s=_STORE_RETRY_S)
                await asyncio.sleep(_STORE_RETRY_S)
                continue
            await _wait(changed, follower, deps.clock.sleep_until(due) if due is not None else None)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def _follow(store, after_seq: int, changed: asyncio.Event) -> None:
    async for _ in store.read(after_seq=after_seq, subject_filter=RunQueue.ref(QUEUE_ID).subject(), follow=True):
        changed.set()


async def _wait(changed: asyncio.Event, follower: asyncio.Task, sleep) -> None:
    """Until the queue changes or the sleep ends. Raises what ended the follower (the service turns unhealthy)."""
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
        raise RuntimeError("the queue's commit follower ended")
