"""The scheduler service: wiring of the task clock, the run-finished handler, the scheduling tools and the
private read model (``scheduled_tasks``, ``task_run_logs``, ``registered_groups``).

Several replicas may run against one stream: each due time is claimed by an optimistic-concurrency append on
its task, so exactly one of them starts the run.
"""

from __future__ import annotations

from projections.chat import RegisteredGroups
from projections.readmodel import LocalReadModel
from projections.scheduler import ScheduledTasks, TaskRunLogs
from services.harness.clock import Clock, SystemClock
from services.harness.context import ServiceContext
from services.harness.service import Service
from services.scheduler import handlers, ipc
from services.scheduler.claims import SchedulerDeps, scheduler_clock
from services.scheduler.config import SchedulerConfig


def build(ctx: ServiceContext, clock: Clock | None = None, instance: str = "") -> Service:
    """``clock``: for tests (default: the system clock). ``instance``: a suffix for the read-model file when
    several replicas share one data directory (tests).

    Raises: pydantic.ValidationError for an invalid ``scheduler:`` section (reported at boot)."""
    config = SchedulerConfig.model_validate(ctx.settings.scheduler)
    readmodel = LocalReadModel(ctx.data_dir / "scheduler" / f"readmodel{instance}.db",
                               [ScheduledTasks(), TaskRunLogs(), RegisteredGroups()], ctx.store)
    deps = SchedulerDeps(repository=ctx.repository("scheduler"), readmodel=readmodel, config=config,
                         clock=clock or SystemClock(), timezone=ctx.settings.timezone)
    return Service("scheduler", handlers=dict(handlers.HANDLERS), requests=ipc.REQUESTS, deps=deps,
                   readmodel=readmodel, tasks=[scheduler_clock])
