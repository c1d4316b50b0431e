"""The scheduler's event handlers: a finished agent run that carried a task run → ``TaskRunFinished`` on the
task (v1 ``task_run_logs`` row and ``updateTaskAfterRun``), ``TaskCompleted`` for a ``once`` task, and, with
``report_errors``, a notice to the chat when the run failed.
"""

from __future__ import annotations

from events.catalogue.agent import AgentRunFinished
from events.envelope import AggregateRef
from services.harness.service import Delivery, Emit
from services.scheduler.claims import SchedulerDeps, error_notice, log
from services.scheduler.task import ScheduledTask


async def on_run_finished(d: Delivery, deps: SchedulerDeps) -> list[Emit]:
    fin: AgentRunFinished = d.payload  # type: ignore[assignment]
    task_id, result = await _run_facts(deps, fin.run_id)
    if task_id is None or not deps.readmodel.query("SELECT 1 FROM scheduled_tasks WHERE id = ?", (task_id,)):
        return []  # a message run, or a task run someone else requested (governance dispatches)
    task = await deps.repository.get(ScheduledTask, task_id)
    ok = fin.status == "succeeded"
    if task is None or not task.finish(run_id=fin.run_id, status="success" if ok else "error",
                                       interrupted=fin.interrupted, run_at=d.event.time,
                                       duration_ms=fin.duration_ms or 0, result=result, error=fin.error):
        log.info("finished run is not this task's run in flight; ignored", task_id=task_id, run_id=fin.run_id,
                 interrupted=fin.interrupted)
        return []
    emits = [Emit.of(task)]
    if not ok:
        emits.append(error_notice(deps, task, f"Scheduled task {task_id} failed: {fin.error or fin.status}",
                                   f"failed:{fin.run_id}"))
    return [e for e in emits if e is not None]


async def _run_facts(deps: SchedulerDeps, run_id: str) -> tuple[str | None, str | None]:
    """The task id an agent run carried (from its ``AgentRunStarted``) and its last output text."""
    task_id = result = None
    for commit in await deps.repository.store.load(AggregateRef("agent", "run", run_id)):
        for event in commit.events:
            if event.eventtype == "AgentRunStarted":
                task_id = event.data.get("task_id")
            elif event.eventtype == "AgentOutputProduced" and event.data.get("text"):
                result = event.data["text"]
    return task_id, result


HANDLERS = {"AgentRunFinished": on_run_finished}
