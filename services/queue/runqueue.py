"""The run-queue aggregate (``queue/runqueue/default``): who waits, who runs, each group's retry count.

Rules as NanoClaw v1 ``GroupQueue`` (nanoclaw-behaviour §13): one run per group (chat JID), a global cap
shared by message and task runs, a group's tasks before its messages, waiting groups served FIFO, a waiting task
closes an idle message run, failed message runs retried with exponential backoff and then abandoned.

Command methods (``enqueue_message``, ``finish``, ``drain`` …) decide and record events; state changes only in
the ``@event`` methods, so replaying the stored events rebuilds exactly this state. Limits (cap, retries) are
configuration passed to the commands, not state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.queue import rerun_id
from events.catalogue.types import iso_utc

QUEUE_ID = "default"
RECENT_RUNS = 5000
"""Queued run ids remembered to ignore a redelivered trigger; a redelivery comes within minutes, so the last
5000 runs are plenty and the aggregate stays bounded."""

@dataclass
class QueuedRun:
    """A ``RunQueued`` waiting for a slot. ``rerun``: the re-queue of an interrupted task run (never re-run again)."""

    run_id: str
    kind: str
    chat_jid: str
    group_folder: str
    is_main: bool
    channel: str | None
    prompt: str
    task_id: str | None
    script: str | None
    context_mode: str
    turn_id: str | None
    rerun: bool = False


@dataclass
class ActiveRun:
    """The group's dispatched run (``spec`` as dispatched: coalesced prompt, first queued run's id)."""

    spec: QueuedRun
    turn_ids: list[str]
    queued_run_ids: list[str]
    attempt: int
    idle: bool = False
    close_requested: bool = False

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def kind(self) -> str:
        return self.spec.kind


@dataclass
class GroupState:
    """One group (chat JID). ``retries``: attempt → ``due_at`` (ISO UTC) of scheduled retries not yet due."""

    chat_jid: str
    group_folder: str
    active: ActiveRun | None = None
    tasks: list[QueuedRun] = field(default_factory=list)
    messages: list[QueuedRun] = field(default_factory=list)
    retry_count: int = 0
    retries: dict[int, str] = field(default_factory=dict)

    @property
    def has_pending(self) -> bool:
        return bool(self.tasks or self.messages)


class RunQueue(NcAggregate):
    CONTEXT, TYPE = "queue", "runqueue"

    @staticmethod
    def create_id(**_: Any) -> str:
        return QUEUE_ID

    @event("RunQueueOpened")
    def __init__(self) -> None:
        self.groups: dict[str, GroupState] = {}
        self.waiting: list[str] = []  # JIDs with pending runs and no slot, oldest first (v1 waitingGroups)
        self.recent: dict[str, None] = {}  # recently queued run ids, oldest first (an ordered set)

    # -- reading ------------------------------------------------------------------------------------------

    @property
    def active_count(self) -> int:
        return sum(1 for g in self.groups.values() if g.active is not None)

    def active_run(self, chat_jid: str) -> ActiveRun | None:
        g = self.groups.get(chat_jid)
        return g.active if g else None

    def knows(self, run_id: str) -> bool:
        return run_id in self.recent

    def scheduled_retries(self) -> list[tuple[str, str, int]]:
        """Retries scheduled and not yet due, as ``(due_at, chat_jid, attempt)`` sorted by ``due_at``."""
        return sorted((due, jid, n) for jid, g in self.groups.items() for n, due in g.retries.items())

    # -- commands -----------------------------------------------------------------------------------------

    def enqueue_message(self, *, run_id: str, turn_id: str, chat_jid: str, group_folder: str, is_main: bool,
                        channel: str | None, prompt: str) -> bool:
        """Queue a message run (v1 enqueueMessageCheck). Returns False for a run already queued (redelivery)."""
        if self.knows(run_id):
            return False
        self._queued(run_id=run_id, chat_jid=chat_jid, group_folder=group_folder, kind="message", is_main=is_main,
                     channel=channel, prompt=prompt, task_id=None, script=None, context_mode="group", turn_id=turn_id)
        return True

    def enqueue_task(self, *, run_id: str, task_id: str, chat_jid: str, group_folder: str, is_main: bool,
                     prompt: str, script: str | None, context_mode: str) -> bool:
        """Queue a task run (v1 enqueueTask). Returns False when the run is already queued or the task is
        queued or running (v1 #138: the scheduler re-finds due tasks while they run). A waiting task closes an
        idle message run at once (v1 preempt)."""
        if self.knows(run_id) or self._task_known(chat_jid, task_id):
            return False
        self._queued(run_id=run_id, chat_jid=chat_jid, group_folder=group_folder, kind="task", is_main=is_main,
                     channel=None, prompt=prompt, task_id=task_id, script=script, context_mode=context_mode, turn_id=None)
        self._close_if_idle(chat_jid)
        return True

    def mark_idle(self, run_id: str, chat_jid: str) -> bool:
        """The active message run reported a success result (v1 notifyIdle); a waiting task closes it.
        Returns False when nothing changed (another run, a task run, already idle)."""
        active = self.active_run(chat_jid)
        if active is None or active.run_id != run_id or active.kind != "message" or active.idle:
            return False
        self._idled(run_id=run_id, chat_jid=chat_jid)
        self._close_if_idle(chat_jid)
        return True

    def pipe_input(self, run_id: str, chat_jid: str) -> bool:
        """A follow-up went into the active message run (v1 sendMessage): it is busy again. Only an idle run
        changes state, so a redelivered follow-up records nothing twice. Task runs take no input (v1)."""
        active = self.active_run(chat_jid)
        if active is None or active.run_id != run_id or active.kind != "message" or not active.idle:
            return False
        self._piped(run_id=run_id, chat_jid=chat_jid)
        return True

    def finish(self, *, run_id: str, chat_jid: str, status: str, output_delivered: bool, interrupted: bool,
               error: str | None, now: datetime, max_retries: int,
               retry_delay_ms: Callable[[int], int]) -> bool:
        """The group's active run ended: free its slot, then retry or abandon a failed message run (v1
        runForGroup/scheduleRetry). ``retry_delay_ms(attempt)`` gives the backoff. A failure after output reached
        the user counts as handled (v1). An interrupted task run is re-queued once. Returns False for a run that
        is not the group's active one (already finished, or never dispatched here)."""
        g = self.groups.get(chat_jid)
        active = g.active if g else None
        if g is None or active is None or active.run_id != run_id:
            return False
        failed = status != "succeeded" and not output_delivered
        spec = active.spec
        if spec.kind == "task" and interrupted and not spec.rerun and not self._task_pending(chat_jid, spec.task_id):
            # queued before the release: while the task is still active, its RunQueued marks the re-run
            self._queued(run_id=rerun_id(run_id), chat_jid=chat_jid, group_folder=spec.group_folder, kind="task",
                         is_main=spec.is_main, channel=spec.channel, prompt=spec.prompt, task_id=spec.task_id,
                         script=spec.script, context_mode=spec.context_mode, turn_id=None)
        self._released(run_id=run_id, chat_jid=chat_jid, group_folder=spec.group_folder, kind=spec.kind,
                       outcome="failed" if failed else "succeeded")
        if spec.kind == "message" and failed:
            attempt = g.retry_count + 1
            if attempt > max_retries:
                self._abandoned(chat_jid=chat_jid, group_folder=spec.group_folder, run_id=run_id, attempts=attempt,
                                reason=f"{attempt} failed runs in a row; last: {error or status}")
            else:
                delay = retry_delay_ms(attempt)
                self._retry_scheduled(chat_jid=chat_jid, group_folder=spec.group_folder, failed_run_id=run_id,
                                      attempt=attempt, delay_ms=delay, due_at=iso_utc(now + timedelta(milliseconds=delay)))
        return True

    def retry_due(self, chat_jid: str, attempt: int) -> bool:
        """Record that a scheduled retry is due (the router then requests a turn). False if already recorded."""
        g = self.groups.get(chat_jid)
        if g is None or attempt not in g.retries:
            return False
        self._retry_became_due(chat_jid=chat_jid, attempt=attempt)
        return True

    def drain(self, cap: int, first: str | None = None) -> list[str]:
        """Dispatch while under ``cap``: ``first`` (the group whose run just ended: v1 drainGroup) and then the
        waiting groups FIFO (v1 drainWaiting); in each, tasks before messages. Returns the dispatched run ids."""
        started = []
        for jid in ([first] if first else []) + [j for j in self.waiting if j != first]:
            if self.active_count >= cap:
                break
            g = self.groups.get(jid)
            if g is not None and g.active is None and g.has_pending:
                started.append(self._dispatch(g))
        return started

    # -- decisions ----------------------------------------------------------------------------------------

    def _task_pending(self, chat_jid: str, task_id: str | None) -> bool:
        g = self.groups.get(chat_jid)
        return g is not None and any(t.task_id == task_id for t in g.tasks)

    def _task_known(self, chat_jid: str, task_id: str) -> bool:
        active = self.active_run(chat_jid)
        return (active is not None and active.spec.task_id == task_id) or self._task_pending(chat_jid, task_id)

    def _close_if_idle(self, chat_jid: str) -> None:
        g = self.groups[chat_jid]
        a = g.active
        if a is not None and a.kind == "message" and a.idle and not a.close_requested and g.tasks:
            self._close_requested(run_id=a.run_id, chat_jid=chat_jid, group_folder=a.spec.group_folder,
                                  reason="task_waiting")

    def _dispatch(self, g: GroupState) -> str:
        if g.tasks:  # tasks first: they are not re-discovered like messages are (v1)
            t = g.tasks[0]
            self._dispatched(run_id=t.run_id, chat_jid=t.chat_jid, group_folder=t.group_folder, kind="task",
                             is_main=t.is_main, channel=t.channel, prompt=t.prompt, task_id=t.task_id, script=t.script,
                             context_mode=t.context_mode, turn_ids=[], queued_run_ids=[t.run_id], attempt=0)
            return t.run_id
        first, last = g.messages[0], g.messages[-1]  # coalesce: v1 hands all pending messages to one run
        self._dispatched(run_id=first.run_id, chat_jid=g.chat_jid, group_folder=last.group_folder, kind="message",
                         is_main=last.is_main, channel=last.channel, prompt="\n".join(m.prompt for m in g.messages),
                         task_id=None, script=None, context_mode="group",
                         turn_ids=[m.turn_id for m in g.messages if m.turn_id],
                         queued_run_ids=[m.run_id for m in g.messages], attempt=g.retry_count)
        return first.run_id

    # -- events (the only state changes) ------------------------------------------------------------------

    def _group(self, chat_jid: str, group_folder: str) -> GroupState:
        g = self.groups.setdefault(chat_jid, GroupState(chat_jid, group_folder))
        g.group_folder = group_folder
        return g

    def _wait(self, g: GroupState) -> None:
        if g.active is None and g.has_pending and g.chat_jid not in self.waiting:
            self.waiting.append(g.chat_jid)

    @event("RunQueued")
    def _queued(self, run_id: str, chat_jid: str, group_folder: str, kind: str, is_main: bool, channel: str | None,
                prompt: str, task_id: str | None, script: str | None, context_mode: str, turn_id: str | None) -> None:
        g = self._group(chat_jid, group_folder)
        # the running task's own id can only be queued as the re-run of its interruption (dedup forbids it otherwise)
        rerun = kind == "task" and g.active is not None and g.active.spec.task_id == task_id
        run = QueuedRun(run_id, kind, chat_jid, group_folder, is_main, channel, prompt, task_id, script, context_mode,
                        turn_id, rerun)
        (g.tasks if kind == "task" else g.messages).append(run)
        self._wait(g)
        self.recent[run_id] = None
        while len(self.recent) > RECENT_RUNS:
            del self.recent[next(iter(self.recent))]

    @event("RunDispatched")
    def _dispatched(self, run_id: str, chat_jid: str, group_folder: str, kind: str, is_main: bool, channel: str | None,
                    prompt: str, task_id: str | None, script: str | None, context_mode: str, turn_ids: list[str],
                    queued_run_ids: list[str], attempt: int) -> None:
        g = self._group(chat_jid, group_folder)
        ids = set(queued_run_ids)
        rerun = any(r.rerun for r in g.tasks if r.run_id in ids)
        g.tasks = [r for r in g.tasks if r.run_id not in ids]
        g.messages = [r for r in g.messages if r.run_id not in ids]
        spec = QueuedRun(run_id, kind, chat_jid, group_folder, is_main, channel, prompt, task_id, script, context_mode,
                         turn_ids[0] if turn_ids else None, rerun)
        g.active = ActiveRun(spec, list(turn_ids), list(queued_run_ids), attempt)
        if chat_jid in self.waiting:
            self.waiting.remove(chat_jid)

    @event("RunIdled")
    def _idled(self, run_id: str, chat_jid: str) -> None:
        self.groups[chat_jid].active.idle = True  # type: ignore[union-attr]

    @event("RunInputPiped")
    def _piped(self, run_id: str, chat_jid: str) -> None:
        self.groups[chat_jid].active.idle = False  # type: ignore[union-attr]

    @event("RunCloseRequested")
    def _close_requested(self, run_id: str, chat_jid: str, group_folder: str, reason: str) -> None:
        self.groups[chat_jid].active.close_requested = True  # type: ignore[union-attr]

    @event("RunReleased")
    def _released(self, run_id: str, chat_jid: str, group_folder: str, kind: str, outcome: str) -> None:
        g = self._group(chat_jid, group_folder)
        g.active = None
        if kind == "message" and outcome == "succeeded":
            g.retry_count = 0  # v1: a successful message run resets the backoff
        self._wait(g)

    @event("RunRetryScheduled")
    def _retry_scheduled(self, chat_jid: str, group_folder: str, failed_run_id: str, attempt: int, delay_ms: int,
                         due_at: str) -> None:
        g = self._group(chat_jid, group_folder)
        g.retry_count = attempt
        g.retries[attempt] = due_at

    @event("MessageRetryDue")
    def _retry_became_due(self, chat_jid: str, attempt: int) -> None:
        self.groups[chat_jid].retries.pop(attempt, None)

    @event("RunAbandoned")
    def _abandoned(self, chat_jid: str, group_folder: str, run_id: str, attempts: int, reason: str) -> None:
        self._group(chat_jid, group_folder).retry_count = 0  # v1: start afresh with the next message
