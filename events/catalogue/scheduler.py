"""Scheduler events (issue: scheduler). A scheduled task is an aggregate ``scheduler/task/<task id>``.

Fields as NanoClaw v1 ``scheduled_tasks`` (nanoclaw-behaviour §15), plus the task's time zone and catch-up
policy. Times are ISO-8601 UTC strings. Claiming a due time is an optimistic-concurrency append on the task
(``TaskRunStarted`` + ``TaskRunRequested`` in one commit), so a due time runs once across restarts and replicas.
"""

from __future__ import annotations

from typing import Literal

from events.catalogue.base import EventPayload
from events.catalogue.queue import ContextMode
from events.catalogue.types import UtcTimestamp

ScheduleType = Literal["cron", "interval", "once"]
CatchUp = Literal["skip", "once", "all"]
DEFAULT_CONTEXT_MODE: ContextMode = "group"
"""Applied by the service when a request names no ``context_mode`` (tool, CLI and service alike). v1's tool
defaulted to ``group`` and its host to ``isolated`` (quirk 6); ``group`` is what agents were promised."""
DEFAULT_CATCH_UP: CatchUp = "once"


class _TaskEvent(EventPayload):
    context = "scheduler"
    aggregate = "task"

    task_id: str


class TaskCreated(_TaskEvent):
    """A task was scheduled. ``next_run``: its first due time (None never happens for a new task).
    ``created_by``: the group folder of the requesting agent, or ``cli``."""

    group_folder: str
    chat_jid: str
    prompt: str
    schedule_type: ScheduleType
    schedule_value: str
    timezone: str
    context_mode: ContextMode = DEFAULT_CONTEXT_MODE
    script: str | None = None
    catch_up: CatchUp = DEFAULT_CATCH_UP
    next_run: UtcTimestamp | None = None
    created_at: UtcTimestamp
    created_by: str


class TaskUpdated(_TaskEvent):
    """Fields of a task changed; ``None`` means unchanged, ``remove_script`` drops the script. ``next_run``
    is the due time after the change (recomputed when the schedule changed)."""

    prompt: str | None = None
    script: str | None = None
    remove_script: bool = False
    schedule_type: ScheduleType | None = None
    schedule_value: str | None = None
    timezone: str | None = None
    context_mode: ContextMode | None = None
    catch_up: CatchUp | None = None
    next_run: UtcTimestamp | None = None
    by: str


class TaskPaused(_TaskEvent):
    """The task stops firing. ``error`` is set when the scheduler paused it itself (its group is no longer
    registered: v1 fired an error run every minute instead, quirk 8)."""

    by: str
    error: str | None = None


class TaskResumed(_TaskEvent):
    """The task fires again from ``next_run`` (recomputed from now: runs missed while paused are not caught up)."""

    by: str
    next_run: UtcTimestamp | None = None


class TaskCancelled(_TaskEvent):
    """The task was deleted (v1 deletes the row and its run logs; the log keeps them for audits)."""

    by: str


class TaskRunStarted(_TaskEvent):
    """The scheduler claimed due time ``due_at`` and handed the run to the group queue (with
    ``TaskRunRequested`` in the same commit). ``covers``: the missed due times this one run stands for
    (catch-up ``once``); ``next_run``: the task's next due time (None: a ``once`` task)."""

    run_id: str
    due_at: UtcTimestamp
    started_at: UtcTimestamp
    catch_up: CatchUp
    covers: list[UtcTimestamp] = []
    next_run: UtcTimestamp | None = None


class TaskRunsSkipped(_TaskEvent):
    """Missed due times that will never run (catch-up ``skip``, or ``all`` beyond its limit), so an audit
    shows what was skipped. ``due_times``: up to the first 100 of them; ``count``: all of them."""

    due_times: list[UtcTimestamp]
    count: int
    catch_up: CatchUp
    reason: str
    next_run: UtcTimestamp | None = None


class TaskRunFinished(_TaskEvent):
    """A task run ended (v1 ``task_run_logs`` row + ``updateTaskAfterRun``). ``run_at``: when it ended;
    ``result``: the run's last output text; ``last_result``: ``Error: <error>``, the result's first 200
    characters, or ``Completed``."""

    run_id: str
    status: Literal["success", "error"]
    run_at: UtcTimestamp
    duration_ms: int
    result: str | None = None
    error: str | None = None
    last_result: str


class TaskCompleted(_TaskEvent):
    """A ``once`` task ran (or its only due time was skipped): it will not fire again."""


class TaskRunRequested(EventPayload):
    """A scheduled task is due and should run as a task run in the group queue. A task already queued or
    running is not queued twice (v1 #138). Aggregate id: the task id. The queue's run id for it is
    :func:`events.catalogue.queue.task_run_id` of ``run_id``."""

    context = "scheduler"
    aggregate = "task"

    task_id: str
    run_id: str
    chat_jid: str
    group_folder: str
    is_main: bool = False
    prompt: str
    script: str | None = None
    context_mode: ContextMode = "isolated"
