"""The scheduler's clock: sleep until the earliest due task, claim it, re-plan when tasks change.

Event-driven instead of v1's 60 s poll: the wake-up time is the earliest ``next_run`` in the read model,
and any task commit wakes the loop to re-plan. Claiming reads the task aggregate (the read model only
says where to look) and appends with the aggregate's last sequence as the expectation, keyed by that
sequence: a second scheduler replica deciding on the same state gets a conflict or a duplicate, never a
second run. A task whose group is no longer registered is paused with an error instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from events.catalogue.chat import OutboundMessageRequested, channel_of
from events.catalogue.types import iso_utc
from events.errors import ConcurrencyError
from events.repository import Repository
from events.subjects import EVENT_PREFIX
from projections.chat import group_by_jid
from projections.readmodel import ReadModelTimeout
from services.harness.clock import Clock, parse_time
from services.harness.emit import append_emit
from services.harness.logging import get_logger
from services.harness.service import Emit
from services.harness.timer import replan_loop
from services.scheduler import queries
from services.scheduler.config import SchedulerConfig
from services.scheduler.task import ScheduledTask

log = get_logger("nanoclaw.scheduler", service="scheduler")
TASK_SUBJECTS = f"{EVENT_PREFIX}.{ScheduledTask.CONTEXT}.{ScheduledTask.TYPE}.>"
BROKEN_RETRY_S = 5.0  # a task whose claim failed unexpectedly is looked at again after this long


@dataclass
class SchedulerDeps:
    repository: Repository
    readmodel: Any
    config: SchedulerConfig
    clock: Clock
    timezone: str
    broken: dict[str, datetime] = field(default_factory=dict)  # task id → when to try again


async def claim_due(deps: SchedulerDeps) -> datetime | None:
    """Claim every due task. Returns when to look again (the earliest next run, or None: wait for a change).

    Raises: ConcurrencyError (re-plan), EventStoreError (store unreachable)."""
    store = deps.repository.store
    try:
        await deps.readmodel.wait_for(await store.last_seq(), timeout=deps.config.request_timeout_s)
    except ReadModelTimeout as exc:  # plan from what it has: claims re-read each task from the log anyway
        log.warning("read model is behind; planning from it regardless", error=str(exc))
    now = deps.clock.now()
    deps.broken = {k: v for k, v in deps.broken.items() if v > now}
    for task_id in queries.due_task_ids(deps.readmodel, iso_utc(now)):
        if task_id in deps.broken:
            continue
        try:
            await claim(deps, task_id, now)
        except ConcurrencyError:
            log.info("another scheduler moved the task first; backing off", task_id=task_id)
        except Exception as exc:  # one bad task must not stop the others (it is logged, then retried)
            log.exception("claiming a due task failed", task_id=task_id, error=str(exc))
            deps.broken[task_id] = now + timedelta(seconds=BROKEN_RETRY_S)
    wake = queries.next_wake(deps.readmodel, exclude=list(deps.broken))
    retry = min(deps.broken.values(), default=None)
    times = [t for t in (parse_time(wake) if wake else None, retry) if t is not None]
    return min(times, default=None)


async def claim(deps: SchedulerDeps, task_id: str, now: datetime) -> str | None:
    """Claim one task's due time (or pause it when its group is gone). Returns the run id, if one started.

    Raises: ConcurrencyError when another claimer stored first."""
    task = await deps.repository.get(ScheduledTask, task_id)
    if task is None or not task.is_due(now):
        return None
    group = group_by_jid(deps.readmodel, task.chat_jid)
    error = run_id = None
    if group is None or group.folder != task.group_folder:
        error = f"group {task.group_folder!r} ({task.chat_jid}) is no longer registered"
        task.pause(by="scheduler", error=error)
        log.warning("task paused: its group is gone", task_id=task_id, chat_jid=task.chat_jid)
    else:
        run_id = task.claim(now=now, grace_s=deps.config.misfire_grace_s,
                            max_catch_up_runs=deps.config.max_catch_up_runs, is_main=group.is_main)
    emit = Emit.of(task)
    assert emit is not None  # pause and claim always record an event
    store, source = deps.repository.store, deps.repository.source
    await append_emit(store, emit, source=source, msg_id=f"task-claim:{task_id}:{emit.expected_seq}")
    notice = error and error_notice(deps, task, f"Scheduled task {task_id} was paused: {error}.",
                                    f"paused:{task_id}:{emit.expected_seq}")
    if notice:  # best effort, after the pause is stored: a crash in between loses only the notice
        await append_emit(store, notice, source=source, msg_id=notice.msg_id or "")
    log.info("task due", task_id=task_id, run_id=run_id, next_run=task.next_run, status=task.status)
    return run_id


def error_notice(deps: SchedulerDeps, task: ScheduledTask, text: str, key: str) -> Emit | None:
    """A message to the task's chat about a failure, when ``report_errors`` is on."""
    if not deps.config.report_errors:
        return None
    request = OutboundMessageRequested(channel=channel_of(task.chat_jid), chat_jid=task.chat_jid, text=text,
                                       group_folder=task.group_folder)
    return Emit.new(f"task-notice:{key}", request, msg_id=f"task-notice:{key}")


async def scheduler_clock(deps: SchedulerDeps) -> None:
    """The service task; runs until cancelled."""
    await replan_loop("scheduler", deps.repository.store, TASK_SUBJECTS, lambda: claim_due(deps), deps.clock, log)
