"""The scheduled-task aggregate (``scheduler/task/<task id>``): created, updated, paused, resumed, cancelled,
run started, run finished.

Rules as NanoClaw v1 task-scheduler/ipc (nanoclaw-behaviour §11.3, §14), with its timing quirks settled:
``once`` times are read in the task's zone (quirk 7), a changed schedule always recomputes ``next_run``
(quirks 7, 16), resuming recomputes it from now, and a task never has two runs in flight, so a due time is
claimed again only after the previous run finished (v1 #138 fixed at the source, not by queue dedup).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, get_args

from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.queue import ContextMode, rerun_id, task_run_id
from events.catalogue.scheduler import CatchUp
from events.catalogue.types import iso_utc
from services.harness.clock import parse_time
from services.scheduler import catchup
from services.scheduler.schedule import Schedule

_RUN_NS = uuid.UUID("5b2d7c8e-61f4-4d3a-a0b9-9e4c1f2a7d63")
RESULT_CHARS = 200  # v1 last_result: the first 200 characters of the result
CONTEXT_MODES: tuple[str, ...] = get_args(ContextMode)
CATCH_UPS: tuple[str, ...] = get_args(CatchUp)


class TaskError(ValueError):
    """A task command is invalid in the task's current state (the message says why)."""


class ScheduledTask(NcAggregate):
    CONTEXT, TYPE = "scheduler", "task"

    @staticmethod
    def create_id(task_id: str, **_: Any) -> str:
        return task_id

    @classmethod
    def schedule(cls, *, task_id: str, group_folder: str, chat_jid: str, prompt: str, schedule: Schedule,
                 context_mode: str, script: str | None, catch_up: str, now: datetime, by: str) -> "ScheduledTask":
        """Raises: TaskError naming a bad prompt, context mode or catch-up policy."""
        _check_prompt(prompt)
        _check_choice("context_mode", context_mode, CONTEXT_MODES)
        _check_choice("catch_up", catch_up, CATCH_UPS)
        first = schedule.first_due(now)
        return cls(task_id=task_id, group_folder=group_folder, chat_jid=chat_jid, prompt=prompt,
                   schedule_type=schedule.type, schedule_value=schedule.value, timezone=schedule.tz,
                   context_mode=context_mode, script=script or None, catch_up=catch_up,
                   next_run=_iso(first), created_at=iso_utc(now), created_by=by)

    @event("TaskCreated")
    def __init__(self, task_id: str, group_folder: str, chat_jid: str, prompt: str, schedule_type: str,
                 schedule_value: str, timezone: str, context_mode: str, script: str | None, catch_up: str,
                 next_run: str | None, created_at: str, created_by: str):
        self.task_id, self.group_folder, self.chat_jid, self.prompt = task_id, group_folder, chat_jid, prompt
        self.schedule_type, self.schedule_value, self.timezone = schedule_type, schedule_value, timezone
        self.context_mode, self.script, self.catch_up = context_mode, script, catch_up
        self.next_run, self.created_at, self.created_by = next_run, created_at, created_by
        self.status = "active"
        self.last_run: str | None = None
        self.last_result: str | None = None
        self.in_flight: str | None = None  # the scheduler run id handed to the queue and not finished yet

    # -- reads ---------------------------------------------------------------------------------------

    def schedule_spec(self) -> Schedule:
        return Schedule(self.schedule_type, self.schedule_value, self.timezone)  # type: ignore[arg-type]

    def is_due(self, now: datetime) -> bool:
        return (self.status == "active" and self.in_flight is None and self.next_run is not None
                and parse_time(self.next_run) <= now)

    def queue_run_ids(self) -> tuple[str, str] | None:
        """The group queue's ids for the run in flight: its first attempt and the re-run of an interrupted one."""
        if self.in_flight is None:
            return None
        first = task_run_id(self.in_flight)
        return first, rerun_id(first)

    # -- commands ------------------------------------------------------------------------------------

    def update(self, *, now: datetime, by: str, prompt: str | None = None, script: str | None = None,
               schedule: Schedule | None = None, context_mode: str | None = None, catch_up: str | None = None) -> None:
        """``script=""`` removes the script. A changed schedule recomputes ``next_run`` from ``now``.

        Raises: TaskError for a cancelled or completed task, nothing to change, or a bad field."""
        self._check_open()
        if prompt is not None:
            _check_prompt(prompt)
        if context_mode is not None:
            _check_choice("context_mode", context_mode, CONTEXT_MODES)
        if catch_up is not None:
            _check_choice("catch_up", catch_up, CATCH_UPS)
        if all(v is None for v in (prompt, script, schedule, context_mode, catch_up)):
            raise TaskError("nothing to update: give a prompt, script, schedule, context_mode or catch_up")
        changed = schedule is not None and schedule != self.schedule_spec()
        next_run = _iso(schedule.first_due(now)) if changed and schedule else self.next_run
        self._updated(task_id=self.id, prompt=prompt, script=script or None, remove_script=script == "",
                      schedule_type=schedule.type if changed and schedule else None,
                      schedule_value=schedule.value if changed and schedule else None,
                      timezone=schedule.tz if changed and schedule else None, context_mode=context_mode,
                      catch_up=catch_up, next_run=next_run, by=by)

    @event("TaskUpdated")
    def _updated(self, task_id: str, prompt: str | None, script: str | None, remove_script: bool,
                 schedule_type: str | None, schedule_value: str | None, timezone: str | None,
                 context_mode: str | None, catch_up: str | None, next_run: str | None, by: str) -> None:
        for name, value in (("prompt", prompt), ("script", script), ("schedule_type", schedule_type),
                            ("schedule_value", schedule_value), ("timezone", timezone),
                            ("context_mode", context_mode), ("catch_up", catch_up)):
            if value is not None:
                setattr(self, name, value)
        if remove_script:
            self.script = None
        self.next_run = next_run

    def pause(self, *, by: str, error: str | None = None) -> None:
        """Raises: TaskError unless the task is active."""
        if self.status != "active":
            raise TaskError(f"task {self.id} is {self.status}; only an active task can be paused")
        self._paused(task_id=self.id, by=by, error=error)

    @event("TaskPaused")
    def _paused(self, task_id: str, by: str, error: str | None) -> None:
        self.status = "paused"
        if error:
            self.last_result = f"Error: {error}"

    def resume(self, *, now: datetime, by: str) -> None:
        """Runs missed while paused are not caught up: ``next_run`` is recomputed from ``now`` (a ``once``
        task keeps its time, so one that fell due while paused runs at once).

        Raises: TaskError unless the task is paused."""
        if self.status != "paused":
            raise TaskError(f"task {self.id} is {self.status}; only a paused task can be resumed")
        spec = self.schedule_spec()
        next_run = self.next_run
        if spec.type != "once" and (next_run is None or parse_time(next_run) <= now):
            next_run = _iso(spec.next_after(parse_time(next_run) if next_run else now, now))
        self._resumed(task_id=self.id, by=by, next_run=next_run)

    @event("TaskResumed")
    def _resumed(self, task_id: str, by: str, next_run: str | None) -> None:
        self.status, self.next_run = "active", next_run

    def cancel(self, *, by: str) -> None:
        """Raises: TaskError for a task already cancelled."""
        if self.status == "cancelled":
            raise TaskError(f"task {self.id} is already cancelled")
        self._cancelled(task_id=self.id, by=by)

    @event("TaskCancelled")
    def _cancelled(self, task_id: str, by: str) -> None:
        self.status = "cancelled"

    def claim(self, *, now: datetime, grace_s: float, max_catch_up_runs: int, is_main: bool) -> str | None:
        """Claim the task's due time(s) by the catch-up policy. Returns the new run id, or None when nothing
        runs (all skipped). The caller appends the events with the aggregate's last seq as the expectation:
        a second claimer of the same due time gets a conflict.

        Raises: TaskError when the task is not due."""
        if not self.is_due(now):
            raise TaskError(f"task {self.id} is not due (status {self.status}, next run {self.next_run})")
        assert self.next_run is not None
        p = catchup.plan(self.schedule_spec(), parse_time(self.next_run), now, self.catch_up, grace_s,
                         max_catch_up_runs)
        if p.skipped:
            reason = {"skip": "missed while the scheduler was down (catch_up skip)",
                      "all": f"beyond the {max_catch_up_runs} newest missed runs (catch_up all)"}.get(self.catch_up, "")
            self._skipped(task_id=self.id, due_times=[_iso(d) for d in p.skipped[:100]], count=len(p.skipped),
                          catch_up=self.catch_up, reason=reason + (" (count is a floor)" if p.truncated else ""),
                          next_run=_iso(p.next_run) if p.run is None else self.next_run)
        if p.run is None:
            if p.next_run is None:
                self._completed(task_id=self.id)
            return None
        run_id = str(uuid.uuid5(_RUN_NS, f"{self.id}:{_iso(p.run)}"))
        self._run_started(task_id=self.id, run_id=run_id, due_at=_iso(p.run), started_at=iso_utc(now),
                          catch_up=self.catch_up, covers=[_iso(d) for d in p.covers[:100]], next_run=_iso(p.next_run))
        self._run_requested(task_id=self.id, run_id=run_id, chat_jid=self.chat_jid, group_folder=self.group_folder,
                            is_main=is_main, prompt=self.prompt, script=self.script, context_mode=self.context_mode)
        return run_id

    @event("TaskRunsSkipped")
    def _skipped(self, task_id: str, due_times: list[str], count: int, catch_up: str, reason: str,
                 next_run: str | None) -> None:
        self.next_run = next_run

    @event("TaskRunStarted")
    def _run_started(self, task_id: str, run_id: str, due_at: str, started_at: str, catch_up: str,
                     covers: list[str], next_run: str | None) -> None:
        self.in_flight, self.next_run = run_id, next_run

    @event("TaskRunRequested")
    def _run_requested(self, task_id: str, run_id: str, chat_jid: str, group_folder: str, is_main: bool,
                       prompt: str, script: str | None, context_mode: str) -> None:
        pass  # the queue's input; the claim is TaskRunStarted

    def finish(self, *, run_id: str, status: str, interrupted: bool, run_at: datetime, duration_ms: int,
               result: str | None, error: str | None) -> bool:
        """Record the end of the run in flight (``run_id``: the queue's run id). Returns False when it is not
        this task's run in flight, or an interrupted first attempt (the queue re-runs it once; its re-run's
        end is recorded instead)."""
        ids = self.queue_run_ids()
        if ids is None or run_id not in ids or self.status == "cancelled":
            return False
        if interrupted and run_id == ids[0]:
            return False
        ok = status == "success"
        last = f"Error: {error or status}" if not ok else (result[:RESULT_CHARS] if result else "Completed")
        self._run_finished(task_id=self.id, run_id=self.in_flight, status="success" if ok else "error",
                           run_at=iso_utc(run_at), duration_ms=duration_ms, result=result,
                           error=None if ok else (error or status), last_result=last)
        if self.next_run is None and self.status == "active":
            self._completed(task_id=self.id)
        return True

    @event("TaskRunFinished")
    def _run_finished(self, task_id: str, run_id: str, status: str, run_at: str, duration_ms: int,
                      result: str | None, error: str | None, last_result: str) -> None:
        self.in_flight, self.last_run, self.last_result = None, run_at, last_result

    @event("TaskCompleted")
    def _completed(self, task_id: str) -> None:
        self.status = "completed"

    def _check_open(self) -> None:
        if self.status in ("cancelled", "completed"):
            raise TaskError(f"task {self.id} is {self.status}")


def _iso(value: datetime | None) -> str | None:
    return iso_utc(value) if value is not None else None


def _check_prompt(prompt: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise TaskError("prompt must be a non-empty string")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TaskError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
