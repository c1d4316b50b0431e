"""The queue's handlers: pure decisions over (event, queue aggregate, config, clock) → one ``Emit`` on the queue.

Each handler loads ``queue/runqueue/default``, lets the aggregate decide and returns its new events with the
aggregate's last sequence as the expectation (optimistic concurrency), so a decision based on stale state is
refused by the store and redelivered. Triggers map to deterministic run ids and the aggregate ignores a run it
already queued, so a redelivered or duplicated trigger never starts a second run.

| Event | Decision (v1 GroupQueue, nanoclaw-behaviour §13) |
|---|---|
| ``AgentTurnRequested`` | ``RunQueued`` (held, neither piped nor dispatched, while an earlier turn of the chat by ``seq`` has not arrived); ``RunInputPiped`` into the group's idle message run, or ``RunDispatched`` if the group is free and a slot is |
| ``TaskRunRequested`` | dedup by task id; ``RunQueued``; ``RunCloseRequested`` if the group's run idles; dispatch |
| ``AgentOutputProduced`` (success, ``idle`` not false, active run) | ``RunIdled``; then waiting turns are piped, or the run closed for a waiting task or slot |
| ``AgentInputReturned`` (unanswered turns of the active run) | ``RunInputRequeued`` + ``RunCloseRequested`` |
| ``AgentRunFinished`` (active run) | ``RunReleased``; failed message run → ``RunRetryScheduled`` or ``RunAbandoned`` (at once when the credential failed: retry_policy.py) for the turns it left unanswered (a piped turn it answered before dying counts as answered: answered.py); drain |

Idle runs are closed by the queue's timer (:mod:`services.queue.timers`), never by the runner; the same timer gives
up on a run that does not end after its close (``RunCloseTimedOut``) and on a turn order gap (``TurnGapSkipped``).
"""

from __future__ import annotations

from dataclasses import dataclass

from events.catalogue.agent import AgentInputReturned, AgentOutputProduced, AgentRunFinished
from events.catalogue.queue import message_run_id, task_run_id
from events.catalogue.router import AgentTurnRequested
from events.catalogue.scheduler import TaskRunRequested
from events.repository import Repository
from services.harness.clock import Clock
from services.harness.logging import get_logger
from services.harness.service import Delivery, Emit
from services.queue import retry_policy
from services.queue.answered import answered_turns
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
    queue = RunQueue() if queue is None and create else queue
    if queue is not None:
        queue.decided_at = deps.clock.now()  # stamps close requests (the close deadline's start)
    return queue


def _emit(queue: RunQueue | None) -> list[Emit]:
    emit = Emit.of(queue) if queue is not None else None
    return [emit] if emit else []


async def on_turn_requested(d: Delivery, deps: QueueDeps) -> list[Emit]:
    turn: AgentTurnRequested = d.payload  # type: ignore[assignment]
    queue = await _load(deps, create=True)
    assert queue is not None
    if not queue.enqueue_message(run_id=message_run_id(turn.turn_id), turn_id=turn.turn_id, chat_jid=turn.chat_jid,
                                 group_folder=turn.group_folder, is_main=turn.is_main, channel=turn.channel,
                                 prompt=turn.prompt, message_ids=turn.message_ids, batch_limit=turn.batch_limit,
                                 seq=turn.seq, now=deps.clock.now()):
        log.info("turn already queued; ignored", turn_id=turn.turn_id, chat_jid=turn.chat_jid)
    queue.feed(turn.chat_jid)
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
    queue.feed(task.chat_jid)
    queue.drain(deps.config.max_concurrent)
    return _emit(queue)


async def on_output(d: Delivery, deps: QueueDeps) -> list[Emit]:
    out: AgentOutputProduced = d.payload  # type: ignore[assignment]
    if out.status != "success" or out.idle is False:
        return []  # v1 notifyIdle runs on success markers only; a result mid-query is not the end of it
    queue = await _load(deps, create=False)
    if queue is None or not queue.mark_idle(out.run_id, out.chat_jid, deps.clock.now()):
        return []
    queue.feed(out.chat_jid)
    queue.drain(deps.config.max_concurrent)
    return _emit(queue)


async def on_input_returned(d: Delivery, deps: QueueDeps) -> list[Emit]:
    ret: AgentInputReturned = d.payload  # type: ignore[assignment]
    queue = await _load(deps, create=False)
    if queue is None or not queue.return_input(ret.run_id, ret.chat_jid, ret.queued_run_ids, ret.reason):
        log.info("returned input is not pending in its run; ignored", run_id=ret.run_id)
        return []
    return _emit(queue)


async def on_run_finished(d: Delivery, deps: QueueDeps) -> list[Emit]:
    fin: AgentRunFinished = d.payload  # type: ignore[assignment]
    queue = await _load(deps, create=False)
    cfg = deps.config
    failed = fin.status != "succeeded"
    final = await retry_policy.not_retryable(deps.repository.store, fin.run_id) if failed else None
    answered_ids = await answered_turns(deps.repository.store, fin.run_id) if failed else set()
    if queue is None or not queue.finish(run_id=fin.run_id, chat_jid=fin.chat_jid, status=fin.status,
                                         output_delivered=fin.output_delivered, interrupted=fin.interrupted,
                                         error=final or fin.error, now=deps.clock.now(),
                                         max_retries=0 if final else cfg.max_retries,
                                         retry_delay_ms=cfg.retry_delay_ms, answered_turn_ids=answered_ids):
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
    "AgentInputReturned": on_input_returned,
    "AgentRunFinished": on_run_finished,
}
