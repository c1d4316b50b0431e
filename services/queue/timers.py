"""The queue's clock: turns each due ``RunRetryScheduled`` into ``MessageRetryDue`` (v1 scheduleRetry's
setTimeout), closes each run whose idle time is over (``RunCloseRequested``: v1's idle timer, which the
runner kept before; the queue owns the run lifecycle now), releases each run that did not end
``queue.close_timeout_ms`` after its close (``RunCloseTimedOut``) and stops waiting for a chat's missing turn
after ``queue.turn_gap_timeout_ms`` (``TurnGapSkipped``).

The plan is the queue's state (retries scheduled and not yet due, idle runs), so a restarted service re-plans from the
reloaded aggregate and a retry that fell due while it was down fires at once. The task follows the queue
aggregate's commits to re-plan when the state changes. Time comes from an injectable :class:`Clock`, so tests
move time by hand and never wait for real.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from events.catalogue.types import iso_utc
from services.harness.clock import parse_time
from services.harness.logging import get_logger
from services.harness.emit import append_emit
from services.harness.service import Emit
from services.harness.timer import replan_loop
from services.queue.runqueue import QUEUE_ID, RunQueue

if TYPE_CHECKING:
    from services.queue.handlers import QueueDeps

log = get_logger("nanoclaw.queue", service="queue")


def _idle(queue: RunQueue, deps: "QueueDeps") -> list[tuple[str, str]]:
    return queue.idle_due(deps.config.idle_timeout_ms, deps.config.task_close_delay_ms)


def _closing(queue: RunQueue, deps: "QueueDeps") -> list[tuple[str, str]]:
    return queue.close_due(deps.config.close_timeout_ms)


def _gaps(queue: RunQueue, deps: "QueueDeps") -> list[tuple[str, str]]:
    return queue.gap_due(deps.config.turn_gap_timeout_ms)


def next_due(queue: RunQueue | None, deps: "QueueDeps | None" = None) -> datetime | None:
    """When the earliest scheduled retry without a ``MessageRetryDue`` falls due, or (given ``deps``) the
    earliest idle run's idle time ends, a closing run's close deadline or a turn order gap's wait ends (None:
    nothing planned)."""
    if queue is None:
        return None
    times = [at for at, _, _ in queue.scheduled_retries()]
    if deps is not None:
        times += [at for at, _ in _idle(queue, deps) + _closing(queue, deps) + _gaps(queue, deps)]
    return parse_time(min(times)) if times else None


async def fire_due(deps: "QueueDeps", queue: RunQueue | None = None) -> list[tuple[str, int]]:
    """Append one ``MessageRetryDue`` per retry due by ``deps.clock.now()`` (and dispatch what that frees) and
    one ``RunCloseRequested`` per run idle for its whole idle time, one ``RunCloseTimedOut`` + ``RunReleased``
    per run past its close deadline and one ``TurnGapSkipped`` per chat past its gap wait, in one commit.
    Returns the fired ``(chat_jid, attempt)`` retry pairs. The message id is keyed on the queue position the
    decision was based on, so two timers deciding on the same state store one commit. ``queue``: the aggregate when the caller has
    just loaded it (default: load it).

    Raises:
        ConcurrencyError: the queue moved on meanwhile (the caller re-plans and tries again).
    """
    if queue is None:
        queue = await deps.repository.get(RunQueue, QUEUE_ID)
    if queue is None:
        return []
    now = iso_utc(deps.clock.now())
    due = [(jid, n) for at, jid, n in queue.scheduled_retries() if at <= now]  # ISO UTC strings sort as times
    queue.decided_at = deps.clock.now()
    for jid, n in due:
        queue.retry_due(jid, n)
    closed = [jid for at, jid in _idle(queue, deps) if at <= now and queue.close_idle(jid)]
    cfg = deps.config
    expired = [jid for at, jid in _closing(queue, deps) if at <= now and queue.expire_close(
        jid, now=deps.clock.now(), max_retries=cfg.max_retries, retry_delay_ms=cfg.retry_delay_ms)]
    gaps = [jid for at, jid in _gaps(queue, deps) if at <= now and queue.skip_gap(jid, deps.clock.now())]
    for jid in gaps:
        queue.feed(jid)  # the held turns may go into the chat's idle run
    if due or expired or gaps:
        queue.drain(cfg.max_concurrent)
    if closed:
        log.info("idle runs closed", chat_jids=closed)
    if expired:
        log.warning("runs that did not end after their close were released", chat_jids=expired)
    if gaps:
        log.warning("stopped waiting for missing earlier turns", chat_jids=gaps)
    emit = Emit.of(queue)
    if emit is not None:
        await append_emit(deps.repository.store, emit, source=deps.repository.source,
                          msg_id=f"queue-retry-due:{emit.expected_seq}")
        log.info("queue timers fired", retries=due, closed=closed)
    return due


async def retry_timer(deps: "QueueDeps") -> None:
    """The service task: sleep until the next retry is due, fire it, re-plan on every queue commit. Runs until
    cancelled (service stop)."""

    async def step() -> datetime | None:
        queue = await deps.repository.get(RunQueue, QUEUE_ID)
        due = next_due(queue, deps)
        if due is not None and due <= deps.clock.now():
            await fire_due(deps, queue)
            return deps.clock.now()  # look again at once: the next retry may be due too
        return due

    await replan_loop("queue-retry", deps.repository.store, RunQueue.ref(QUEUE_ID).subject(), step, deps.clock, log)
