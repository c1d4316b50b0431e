"""The dispatch loop: hand governance tasks to agent groups, exactly once.

Two steps, each one commit, so a crash between them loses nothing and repeats nothing:

1. A task changed (or a group was registered): if it is ``READY`` with an assignee, the task commit
   ``READY → DOING`` + ``GovTaskDispatched(execute)`` is appended; if it is in ``REVIEW`` with gates still to
   approve, ``REVIEW → APPROVAL`` + one ``GovTaskDispatched(approve)`` per gate whose approver group is
   registered. The commit expects the task's last sequence: a redelivered trigger finds the task moved on and
   does nothing; a racing command makes one of the two saves fail and the trigger is re-decided.
2. ``GovTaskDispatched`` → ``TaskRunRequested`` for the group queue, on the new aggregate
   ``scheduler.task/gov:<dispatch key>``. The queue's consumer takes it like a scheduled task run. A restart
   after it was stored finds the aggregate and appends nothing; until it is stored, the dispatch event stays
   unacknowledged and is delivered again.

The dispatch key ``<task>.<purpose>.<gate|work>.v<version>`` names the task version it was decided on, so the
same state is never dispatched twice and a task that comes back to ``READY`` later is dispatched again.
"""

from __future__ import annotations

from events.catalogue.governance import GovTaskDispatched
from events.catalogue.scheduler import TaskRunRequested
from events.envelope import AggregateRef
from projections.chat import GroupRef, group_by_folder, group_refs
from services.governance import queries
from services.governance.deps import GovernanceDeps
from services.governance.errors import GovernanceError
from services.governance.prompts import approval_prompt, execution_prompt
from services.governance.task import SYSTEM_ACTOR, GovTask, group_actor
from services.harness.logging import get_logger
from services.harness.service import Delivery, Emit

log = get_logger("nanoclaw.governance", service="governance")

RUN_PREFIX = "gov:"


def dispatch_key(task: GovTask, purpose: str, gate: str | None) -> str:
    return f"{task.id}.{purpose}.{gate or 'work'}.v{task.version}"


def run_aggregate_id(key: str) -> str:
    """The ``scheduler.task`` aggregate (and queue task id) carrying a dispatch's ``TaskRunRequested``."""
    return f"{RUN_PREFIX}{key}"


def approver_group(deps: GovernanceDeps, gate: str, task: GovTask) -> GroupRef | None:
    """The registered group that gets a gate's approval run: the configured ``group``, else the first folder
    (by name) holding the gate's role that did not execute ``task`` (an executor may not approve it)."""
    gate_config = deps.config.gates.get(gate)
    if gate_config is None:
        return None
    if gate_config.group is not None:
        return group_by_folder(deps.readmodel, gate_config.group)
    return next((g for g in group_refs(deps.readmodel)
                 if gate_config.role in deps.group_roles(g) and not task.is_executor(group_actor(g.folder))), None)


def decide(task: GovTask, deps: GovernanceDeps) -> bool:
    """Apply the dispatch decision to ``task`` (pending events); returns whether anything changed."""
    at = deps.now()
    if task.state == "READY" and task.assignee:
        target = group_by_folder(deps.readmodel, task.assignee)
        if target is None:
            log.warning("assignee is not a registered group; the task waits in READY", task_id=task.id,
                        assignee=task.assignee)
            return False
        key = dispatch_key(task, "execute", None)
        version_after = task.version + 2  # the move to DOING and the dispatch record
        task.move(to="DOING", actor=SYSTEM_ACTOR, reason=f"dispatched to {target.folder}", evidence=[],
                  review_summary=None, strict=False, at=at)
        task.dispatch(dispatch_key=key, purpose="execute", gate=None, group_folder=target.folder,
                      chat_jid=target.jid, is_main=target.is_main, prompt=execution_prompt(task, version_after), at=at)
        return True
    if task.state == "REVIEW" and task.missing_gates:
        gates = task.missing_gates
        targets = {gate: approver_group(deps, gate, task) for gate in gates}
        keys = {gate: dispatch_key(task, "approve", gate) for gate in gates}
        task.move(to="APPROVAL", actor=SYSTEM_ACTOR, reason=f"review done: approval of {', '.join(gates)} requested",
                  evidence=[], review_summary=None, strict=False, at=at)
        for gate, target in targets.items():
            if target is None:
                log.warning("no registered approver group for gate; approve it from the CLI", task_id=task.id, gate=gate)
                continue
            task.dispatch(dispatch_key=keys[gate], purpose="approve", gate=gate, group_folder=target.folder,
                          chat_jid=target.jid, is_main=target.is_main, prompt=approval_prompt(task, gate), at=at)
        return True
    return False


async def _dispatch_task(task_id: str, deps: GovernanceDeps) -> list[Emit]:
    if not deps.config.auto_dispatch:
        return []
    task = await deps.repository.get(GovTask, task_id)
    if task is None:
        return []
    decided_on = task.version
    try:
        changed = decide(task, deps)
    except GovernanceError as exc:  # e.g. a dispatch key already recorded: nothing to do
        log.info("no dispatch", task_id=task_id, reason=str(exc))
        return []
    # The key names the task version decided on: a second decision on that version (another trigger, a
    # redelivery) is the same commit and is stored once, whatever event caused it.
    emit = Emit.of(task, msg_id=f"gov-decision:{task.id}:v{decided_on}") if changed else None
    return [emit] if emit else []


async def on_task_changed(d: Delivery, deps: GovernanceDeps) -> list[Emit]:
    """``GovTaskAssigned`` / ``GovTaskTransitioned``: dispatch the task if its current state asks for it."""
    return await _dispatch_task(d.payload.task_id, deps)  # type: ignore[attr-defined]


async def on_group_registered(d: Delivery, deps: GovernanceDeps) -> list[Emit]:
    """A group (re)joined: tasks that waited for an assignee or approver group may be dispatched now. One task
    per delivery is decided after another; each emit is its own commit."""
    emits: list[Emit] = []
    for task_id in queries.dispatch_candidates(deps.readmodel):
        emits += await _dispatch_task(task_id, deps)
    return emits


async def on_dispatched(d: Delivery, deps: GovernanceDeps) -> list[Emit]:
    """``GovTaskDispatched`` → the queue's ``TaskRunRequested`` (once)."""
    p: GovTaskDispatched = d.payload  # type: ignore[assignment]
    agg_id = run_aggregate_id(p.dispatch_key)
    request = TaskRunRequested(task_id=agg_id, run_id=agg_id, chat_jid=p.chat_jid, group_folder=p.group_folder,
                               is_main=p.is_main, prompt=p.prompt, context_mode="isolated")
    if (await deps.repository.store.head(AggregateRef.for_payload(request, agg_id))).seq:
        log.info("run already requested for this dispatch", dispatch_key=p.dispatch_key)
        return []
    return [Emit.new(agg_id, request, msg_id=f"gov-run:{p.dispatch_key}")]


HANDLERS = {
    "GovTaskAssigned": on_task_changed,
    "GovTaskTransitioned": on_task_changed,
    "GovTaskDispatched": on_dispatched,
    "GroupRegistered": on_group_registered,
    "GroupReinstated": on_group_registered,
}
