"""The queue's handlers: pure decisions over (event, queue aggregate, config, clock) → one ``Emit`` on the queue.

Each handler loads ``queue/runqueue/default``, lets the aggregate decide and returns its new events with the
aggregate's last sequence as the expectation (optimistic concurrency), so a decision based on stale state is
refused by the store and redelivered. Triggers map to deterministic run ids and the aggregate ignores a run it
already queued, so a redelivered or duplicated trigger never starts a second run.

| Event | Decision (v1 GroupQueue, nanoclaw-behaviour §13) |
|---|---|
| ``AgentTurnRequested`` | ``RunQueued`` (+ ``RunDispatched`` if the group is free and a slot is) |
| ``TaskRunRequested`` | dedup by task id; ``RunQueued``; ``RunCloseRequested`` if the group's message run idles; dispatch |
| ``AgentOutputProduced`` (success, active message run) | ``RunIdled`` (+ ``RunCloseRequested`` once if a task waits) |
| ``AgentInputAppended`` (idle active message run) | ``RunInputPiped``; for a task run: ignored (task runs take no input) |
| ``AgentRunFinished`` (active run) | ``RunReleased``; failed message run → ``RunRetryScheduled`` or ``RunAbandoned`` (at once when the credential failed: retry_policy.py); drain |
"""

from __future__ import annotations

from dataclasses import dataclass

from events.catalogue.agent import AgentOutputProduced, AgentRunFinished
from events.catalogue.queue import message_run_id, task_run_id
from events.catalogue.router import AgentInputAppended, AgentTurnRequested
from events.catalogue.scheduler import TaskRunRequested
from events.repository import Repository
from services.harness.clock import Clock
from services.harness.logging import get_logger
from services.harness.service import Delivery, Emit
from services.queue import retry_policy
from services.queue.config import QueueConfig
from services.queue.runqueue import QUEUE_ID, RunQueue

log = get_logger("nanoclaw.queue", service="queue")


@dataclass
class QueueDeps:
    repository: Repository
    config: QueueConfig
    clock: Clock


async def _load(deps: QueueDeps, *, create: bool) -> RunQueue | None:
    queue = await deps.repository.get(RunQueue, QUEUE_ID)
    return RunQueue() if queue is None and create else queue


def _emit(queue: RunQueue | None) -> list[Emit]:
    emit = Emit.of(queue) if queue is not None else None
    return [emit] if emit else []


async def on_turn_requested(d: Delivery, deps: QueueDeps) -> list[Emit]:
    turn: AgentTurnRequested = d.payload  # type: ignore[assignment]
    queue = await _load(deps, create=True)
    assert queue is not None
    if not queue.enqueue_message(run_id=message_run_id(turn.turn_id), turn_id=turn.turn_id, chat_jid=turn.chat_jid,
                                 group_folder=turn.group_folder, is_main=turn.is_main, channel=turn.channel,
                                 prompt=turn.prompt):
        log.info("turn already queued; ignored", turn_id=turn.turn_id, chat_jid=turn.chat_jid)
    queue.drain(deps.config.max_concurrent)
    return _emit(queue)


async def on_task_requested(d: Delivery, deps: QueueDeps) -> list[Emit]:
    task: TaskRunRequested = d.payload  # type: ignore[assignment]
    queue = await _load(deps, create=True)
    assert queue is not None
    if not queue.enqueue_task(run_id=task_run_id(task.run_id), task_id=task.task_id, chat_jid=task.chat_jid,
                              group_folder=task.group_folder, is_main=task.is_main, prompt=task.prompt,
                              script=task.script, context_mode=task.context_mode):
        log.info("task already queued or running; not queued twice", task_id=task.task_id, chat_jid=task.chat_jid)
    queue.drain(deps.config.max_concurrent)
    return _emit(queue)


async def on_output(d: Delivery, deps: QueueDeps) -> list[Emit]:
    out: AgentOutputProduced = d.payload  # type: ignore[assignment]
    if out.status != "success":
        return []  # v1 notifyIdle runs on success markers only
    queue = await _load(deps, create=False)
    if queue is None or not queue.mark_idle(out.run_id, out.chat_jid):
        return []
    return _emit(queue)


async def on_input_appended(d: Delivery, deps: QueueDeps) -> list[Emit]:
    follow_up: AgentInputAppended = d.payload  # type: ignore[assignment]
    queue = await _load(deps, create=False)
    active = queue.active_run(follow_up.chat_jid) if queue else None
    if active is None or active.run_id != follow_up.run_id:
        log.info("follow-up for a run that is not active; ignored", run_id=follow_up.run_id)
        return []
    if active.kind == "task":
        # v1 sendMessage returns false for task containers; the router should have queued a turn instead
        log.warning("follow-up addressed to a task run; task runs take no piped input", run_id=follow_up.run_id,
                    chat_jid=follow_up.chat_jid)
        return []
    queue.pipe_input(follow_up.run_id, follow_up.chat_jid)  # type: ignore[union-attr]
    return _emit(queue)


async def on_run_finished(d: Delivery, deps: QueueDeps) -> list[Emit]:
    fin: AgentRunFinished = d.payload  # type: ignore[assignment]
    queue = await _load(deps, create=False)
    cfg = deps.config
    final = await retry_policy.not_retryable(deps.repository.store, fin.run_id) if fin.status != "succeeded" else None
    if queue is None or not queue.finish(run_id=fin.run_id, chat_jid=fin.chat_jid, status=fin.status,
                                         output_delivered=fin.output_delivered, interrupted=fin.interrupted,
                                         error=final or fin.error, now=deps.clock.now(),
                                         max_retries=0 if final else cfg.max_retries,
                                         retry_delay_ms=cfg.retry_delay_ms):
        log.info("finished run is not active here; ignored", run_id=fin.run_id, chat_jid=fin.chat_jid)
        return []
    queue.drain(cfg.max_concurrent, first=fin.chat_jid)
    return _emit(queue)


async def on_start(deps: QueueDeps) -> list[Emit]:
    """Fill free slots from the waiting groups (after a restart with a larger ``max_concurrent``)."""
    queue = await _load(deps, create=False)
    if queue is not None:
        queue.drain(deps.config.max_concurrent)
    return _emit(queue)


HANDLERS = {
    "AgentTurnRequested": on_turn_requested,
    "TaskRunRequested": on_task_requested,
    "AgentOutputProduced": on_output,
    "AgentInputAppended": on_input_appended,
    "AgentRunFinished": on_run_finished,
}
