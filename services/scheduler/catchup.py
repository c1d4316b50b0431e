"""What to do with a task's due times once the clock has passed them: the catch-up plan.

A due time is *on time* while the scheduler is at most ``grace_s`` late for it (a scheduler that woke up a
moment late is not an outage); older due times were *missed*. Per task policy (issue: scheduler):

- ``skip``: missed due times never run; an on-time one does.
- ``once`` (default): one run stands for all missed due times (v1 ran overdue tasks once on the next poll).
- ``all``: every missed due time runs, one after another, at most ``max_runs`` of them (the newest); older
  ones are skipped.

Everything skipped is listed in the plan so the scheduler records it (``TaskRunsSkipped``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.scheduler.schedule import Schedule

SCAN_LIMIT = 100_000
"""Due times looked at for one plan (a minutely job over 69 days); beyond it the skipped count is a floor."""


@dataclass(frozen=True)
class CatchUpPlan:
    """``run``: the due time to run now (None: nothing runs); ``covers``: missed due times that run stands
    for; ``skipped``: due times that will never run; ``next_run``: the task's next due time (None: none)."""

    run: datetime | None
    next_run: datetime | None
    covers: list[datetime] = field(default_factory=list)
    skipped: list[datetime] = field(default_factory=list)
    truncated: bool = False


def plan(schedule: Schedule, due: datetime, now: datetime, policy: str, grace_s: float, max_runs: int) -> CatchUpPlan:
    """The plan for a task whose next due time ``due`` is at or before ``now``.

    Raises: ValueError for an unknown policy or a ``due`` after ``now``."""
    if due > now:
        raise ValueError(f"the task is not due: {due.isoformat()} is after {now.isoformat()}")
    dues = list(schedule.due_times(due, now, SCAN_LIMIT))
    truncated = len(dues) == SCAN_LIMIT
    current = dues[-1]
    on_time = now - current <= timedelta(seconds=grace_s)
    if policy == "skip":
        skipped = dues[:-1] if on_time else dues
        return CatchUpPlan(current if on_time else None, schedule.next_after(current, now), skipped=skipped,
                           truncated=truncated)
    if policy == "once":
        return CatchUpPlan(current, schedule.next_after(current, now), covers=dues[:-1], truncated=truncated)
    if policy == "all":
        skipped = dues[:-max_runs] if len(dues) > max_runs else []
        run = dues[len(skipped)]
        # Not clamped to now: the next missed due time is claimed as soon as this run finishes.
        return CatchUpPlan(run, schedule.next_after(run), skipped=skipped, truncated=truncated)
    raise ValueError(f"catch_up must be one of skip, once, all; got {policy!r}")
