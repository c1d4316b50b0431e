"""The run-queue aggregate (``queue/runqueue/default``): who waits, who runs, each group's retry count, and
the one lifecycle of every run (issue 13: one owner).

Rules as NanoClaw v1 ``GroupQueue`` (nanoclaw-behaviour §13): one run per group (chat JID), a global cap
shared by message and task runs, a group's tasks before its messages, waiting groups served FIFO, failed
message runs retried with exponential backoff and then abandoned.

Run states (``ActiveRun.state``; docs/agent-runs.md, "Run lifecycle: one owner, the queue")::

    queued ──RunDispatched──▶ starting ──RunIdled──▶ idle ──RunInputPiped──▶ running ──RunIdled──▶ idle …
                                                      │ RunCloseRequested (idle timeout, a turn or task waits,
                                                      ▼ a slot is wanted, input returned)
                                                   closing ──RunReleased──▶ finished
                                                   └──RunCloseTimedOut + RunReleased (deadline)──▶ finished

Turns are never pushed at a run that cannot take them: a turn waits in the queue while its group's run is
starting or running and is piped (joined with the other waiting turns, within the router's batch limit) as soon
as the run idles. A turn the run never took, or took and never answered, goes back to the front of its group:
at once when the run succeeded or the input was returned, after the backoff when the run failed.

A chat's turns are taken in the router's order (``seq``): a turn ahead of a missing earlier one is held until that
one is queued or the gap wait ends (``TurnGapSkipped``). A run that does not end after its close is released at
the close deadline (``RunCloseTimedOut``), so no run holds its group forever.

Command methods (``enqueue_message``, ``finish``, ``drain`` …) decide and record events; state changes only in
the ``@event`` methods, so replaying the stored events rebuilds exactly this state. Limits (cap, retries) are
configuration passed to the commands, not state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Collection

from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.queue import rerun_id, retry_run_id
from events.catalogue.types import iso_utc
from services.harness.clock import parse_time as parse_iso

QUEUE_ID = "default"
_EPOCH = "1970-01-01T00:00:00.000Z"
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
    message_ids: list[str] = field(default_factory=list)
    batch_limit: int | None = None
    tries: int = 0  # runs this turn was dispatched in (a retry gets a fresh run id)
    seq: int | None = None  # the turn's ordinal in its chat (None: a task, or older logs)
    queued_at: str | None = None  # ISO UTC


@dataclass
class ActiveRun:
    """The group's dispatched run (``spec`` as dispatched: coalesced prompt, first queued run's id).

    ``state``: starting, running, idle or closing. ``turns``: the message turns given to the run (dispatched and
    piped, oldest first); ``answered``: how many of them the run answered (it went idle after them);
    ``idle_since``: ISO UTC time of the last ``RunIdled`` (the idle timer's start)."""

    spec: QueuedRun
    turn_ids: list[str]
    queued_run_ids: list[str]
    attempt: int
    state: str = "starting"
    turns: list[QueuedRun] = field(default_factory=list)
    answered: int = 0
    idle_since: str | None = None
    closing_since: str | None = None  # ISO UTC time of the RunCloseRequested (the close deadline's start)

    @property
    def idle(self) -> bool:
        return self.state == "idle"

    @property
    def close_requested(self) -> bool:
        return self.state == "closing"

    @property
    def unanswered(self) -> list[QueuedRun]:
        return self.turns[self.answered:]

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
    held: list[QueuedRun] = field(default_factory=list)  # a failed run's turns, retried first
    retry_count: int = 0
    retries: dict[int, str] = field(default_factory=dict)
    last_seq: int | None = None  # the last turn ordinal queued in order (None: none seen yet)
    early: list[QueuedRun] = field(default_factory=list)  # turns ahead of a missing earlier one, by seq

    @property
    def has_pending(self) -> bool:
        return bool(self.tasks or self.messages)


class RunQueue(NcAggregate):
    CONTEXT, TYPE = "queue", "runqueue"

    @staticmethod
    def create_id(**_: Any) -> str:
        return QUEUE_ID

    decided_at: datetime | None = None
    """The time of the decision being made (set by the caller after loading; not state): stamps close requests
    so the close deadline (:meth:`close_due`) has a start."""

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
                        channel: str | None, prompt: str, message_ids: list[str] | None = None,
                        batch_limit: int | None = None, seq: int | None = None,
                        now: datetime | None = None) -> bool:
        """Queue a message turn (v1 enqueueMessageCheck). Returns False for a turn already queued (redelivery).
        The caller then calls :meth:`feed` (an idle run takes it) and :meth:`drain`.

        ``seq``: the turn's ordinal in its chat (``AgentTurnRequested.seq``). A turn that arrives ahead of an
        earlier one of its chat (after a crash, the turn a dead queue had fetched but not acked comes back only
        after the ack wait) is held, neither piped nor dispatched, until the earlier ones are queued or the gap
        wait ends (:meth:`skip_gap`): the model sees a chat's turns in the router's order."""
        if self.knows(run_id):
            return False
        self._queued(run_id=run_id, chat_jid=chat_jid, group_folder=group_folder, kind="message", is_main=is_main,
                     channel=channel, prompt=prompt, task_id=None, script=None, context_mode="group", turn_id=turn_id,
                     message_ids=list(message_ids or []), batch_limit=batch_limit, seq=seq,
                     queued_at=iso_utc(now) if now is not None else None)
        return True

    def gap_due(self, gap_timeout_ms: int) -> list[tuple[str, str]]:
        """Chats holding turns for a missing earlier turn, and when the wait for it ends, as ``(due_at ISO UTC,
        chat_jid)`` sorted by time (from when the first held turn was queued)."""
        due = []
        for jid, g in self.groups.items():
            if g.early:
                since = min((t.queued_at for t in g.early if t.queued_at), default=_EPOCH)  # no time: due at once
                due.append((iso_utc(parse_iso(since) + timedelta(milliseconds=gap_timeout_ms)), jid))
        return sorted(due)

    def skip_gap(self, chat_jid: str, now: datetime) -> bool:
        """Stop waiting for the chat's missing turns (``TurnGapSkipped``): the held turns up to the next gap are
        queued. The caller then feeds and drains. False when nothing is held."""
        g = self.groups.get(chat_jid)
        if g is None or not g.early:
            return False
        first = g.early[0]
        since = min((t.queued_at for t in g.early if t.queued_at), default=None)
        waited = int((now - parse_iso(since)).total_seconds() * 1000) if since else 0
        self._gap_skipped(chat_jid=chat_jid, group_folder=g.group_folder, missing_from=(g.last_seq or 0) + 1,
                          missing_to=(first.seq or 1) - 1, waited_ms=max(waited, 0))
        return True

    def enqueue_task(self, *, run_id: str, task_id: str, chat_jid: str, group_folder: str, is_main: bool,
                     prompt: str, script: str | None, context_mode: str) -> bool:
        """Queue a task run (v1 enqueueTask). Returns False when the run is already queued or the task is
        queued or running (v1 #138: the scheduler re-finds due tasks while they run). The caller then calls
        :meth:`feed`, which closes an idle message run at once (v1 preempt)."""
        if self.knows(run_id) or self._task_known(chat_jid, task_id):
            return False
        self._queued(run_id=run_id, chat_jid=chat_jid, group_folder=group_folder, kind="task", is_main=is_main,
                     channel=None, prompt=prompt, task_id=task_id, script=script, context_mode=context_mode,
                     turn_id=None, message_ids=[], batch_limit=None)
        return True

    def mark_idle(self, run_id: str, chat_jid: str, now: datetime) -> bool:
        """The active run ended a query and waits (v1 notifyIdle): every turn given so far is answered. Returns
        False when nothing changed (another run, already idle, closing). The caller then calls :meth:`feed`."""
        active = self.active_run(chat_jid)
        if active is None or active.run_id != run_id or active.state not in ("starting", "running"):
            return False
        self._idled(run_id=run_id, chat_jid=chat_jid, idle_since=iso_utc(now))
        return True

    def feed(self, chat_jid: str) -> None:
        """Whatever waits for ``chat_jid`` meets its idle run: message turns are piped into an idle message run
        (joined within their batch limit); a waiting task, or turns an idle task run cannot take, close it."""
        g = self.groups.get(chat_jid)
        a = g.active if g else None
        if g is None or a is None or a.state != "idle":
            return
        if a.kind == "message" and g.messages and not g.tasks:
            batch = self._batch(g.held + g.messages)
            self._piped(run_id=a.run_id, chat_jid=chat_jid, group_folder=a.spec.group_folder,
                        prompt="\n".join(t.prompt for t in batch), turn_ids=[t.turn_id for t in batch if t.turn_id],
                        queued_run_ids=[t.run_id for t in batch], message_ids=[i for t in batch for i in t.message_ids])
        elif g.tasks or g.messages:
            self._close(a, "task_waiting" if g.tasks else "turn_waiting")

    def return_input(self, run_id: str, chat_jid: str, queued_run_ids: list[str], reason: str) -> bool:
        """Piped turns never reached the run (the runner could not hand them over): they go back to the front
        of the group's turns and the run is closed so the next run takes them at once. False when they are not
        this run's unanswered turns (the run has ended: its release already put them back)."""
        active = self.active_run(chat_jid)
        if active is None or active.run_id != run_id:
            return False
        ids = set(queued_run_ids)
        if not ids or not ids <= {t.run_id for t in active.unanswered}:
            return False
        self._requeued(run_id=run_id, chat_jid=chat_jid, queued_run_ids=list(queued_run_ids), reason=reason[:500])
        self._close(active, "input_returned")
        return True

    def idle_due(self, idle_timeout_ms: int, task_close_delay_ms: int) -> list[tuple[str, str]]:
        """Idle runs and when their idle time ends, as ``(due_at ISO UTC, chat_jid)`` sorted by time: a message
        run ``idle_timeout_ms`` after it idled, a task run (single-turn) ``task_close_delay_ms`` after its result
        (v1 ``IDLE_TIMEOUT``, ``TASK_CLOSE_DELAY_MS``)."""
        due = []
        for jid, g in self.groups.items():
            a = g.active
            if a is not None and a.state == "idle" and a.idle_since:
                ms = idle_timeout_ms if a.kind == "message" else task_close_delay_ms
                due.append((iso_utc(parse_iso(a.idle_since) + timedelta(milliseconds=ms)), jid))
        return sorted(due)

    def close_idle(self, chat_jid: str) -> bool:
        """Close the group's idle run (its idle time is over). False when it is not idle any more."""
        active = self.active_run(chat_jid)
        if active is None or active.state != "idle":
            return False
        self._close(active, "idle_timeout" if active.kind == "message" else "task_done")
        return True

    def close_due(self, close_timeout_ms: int) -> list[tuple[str, str]]:
        """Closing runs and when the queue stops waiting for them to end, as ``(due_at ISO UTC, chat_jid)``
        sorted by time: ``close_timeout_ms`` after the close was requested (older logs: no time, never due)."""
        due = []
        for jid, g in self.groups.items():
            a = g.active
            if a is not None and a.state == "closing" and a.closing_since:
                due.append((iso_utc(parse_iso(a.closing_since) + timedelta(milliseconds=close_timeout_ms)), jid))
        return sorted(due)

    def expire_close(self, chat_jid: str, *, now: datetime, max_retries: int,
                     retry_delay_ms: Callable[[int], int]) -> bool:
        """The group's run was asked to close and never ended: record ``RunCloseTimedOut`` and release it as an
        interrupted, failed run (:meth:`finish`: its unanswered turns are retried after the backoff, an
        interrupted task is re-run once). A later ``AgentRunFinished`` of that run is then ignored. The caller
        then drains. False when the group's run is not closing."""
        a = self.active_run(chat_jid)
        if a is None or a.state != "closing":
            return False
        waited = int((now - parse_iso(a.closing_since)).total_seconds() * 1000) if a.closing_since else 0
        self._close_timed_out(run_id=a.run_id, chat_jid=chat_jid, group_folder=a.spec.group_folder,
                              waited_ms=max(waited, 0))
        return self.finish(run_id=a.run_id, chat_jid=chat_jid, status="failed", output_delivered=False,
                           interrupted=True, error=f"the run did not end within {waited} ms of its close request",
                           now=now, max_retries=max_retries, retry_delay_ms=retry_delay_ms)

    def finish(self, *, run_id: str, chat_jid: str, status: str, output_delivered: bool, interrupted: bool,
               error: str | None, now: datetime, max_retries: int,
               retry_delay_ms: Callable[[int], int], answered_turn_ids: Collection[str] = ()) -> bool:
        """The group's active run ended: free its slot, then retry or abandon a failed message run (v1
        runForGroup/scheduleRetry). ``retry_delay_ms(attempt)`` gives the backoff. A message run failed when it
        did not succeed and left turns unanswered; the turns it answered are done (v1: a failure after output
        reached the user counts as handled), the unanswered ones go back to the group: after the backoff when it
        failed, at once when it succeeded. An interrupted task run is re-queued once. Returns False for a run
        that is not the group's active one (already finished, or never dispatched here).
        ``answered_turn_ids``: piped turns the run answered with user-facing output before it ended without an
        idle marker (:mod:`services.queue.answered`); they and the turns before them are answered too."""
        g = self.groups.get(chat_jid)
        active = g.active if g else None
        if g is None or active is None or active.run_id != run_id:
            return False
        spec = active.spec
        answered = active.answered
        if status == "succeeded" or output_delivered:
            # v1 counts a run that succeeded, or whose output reached the user, as handled: its dispatched turns
            # are answered even without an idle marker (an agent that sends none); piped ones only when answered
            answered = max(answered, len(active.turns) - len(self._piped_turns(active)))
        for i, turn in enumerate(active.turns):
            if turn.turn_id is not None and turn.turn_id in answered_turn_ids:
                answered = max(answered, i + 1)
        left = active.turns[answered:]
        failed = status != "succeeded" and (bool(left) if spec.kind == "message" else not output_delivered)
        if spec.kind == "task" and interrupted and not spec.rerun and not self._task_pending(chat_jid, spec.task_id):
            # queued before the release: while the task is still active, its RunQueued marks the re-run
            self._queued(run_id=rerun_id(run_id), chat_jid=chat_jid, group_folder=spec.group_folder, kind="task",
                         is_main=spec.is_main, channel=spec.channel, prompt=spec.prompt, task_id=spec.task_id,
                         script=spec.script, context_mode=spec.context_mode, turn_id=None, message_ids=[],
                         batch_limit=None)
        self._released(run_id=run_id, chat_jid=chat_jid, group_folder=spec.group_folder, kind=spec.kind,
                       outcome="failed" if failed else "succeeded", answered=answered)
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
        """Record that a scheduled retry is due: the failed run's turns rejoin the front of the group (the
        caller then drains). False if already recorded."""
        g = self.groups.get(chat_jid)
        if g is None or attempt not in g.retries:
            return False
        self._retry_became_due(chat_jid=chat_jid, attempt=attempt)
        return True

    def drain(self, cap: int, first: str | None = None) -> list[str]:
        """Dispatch while under ``cap``: ``first`` (the group whose run just ended: v1 drainGroup) and then the
        waiting groups FIFO (v1 drainWaiting); in each, tasks before messages. Groups still waiting when the cap
        is reached close as many idle runs (longest idle first), so no turn waits on an idle timeout for a slot.
        Returns the dispatched run ids."""
        started = []
        for jid in ([first] if first else []) + [j for j in self.waiting if j != first]:
            if self.active_count >= cap:
                break
            g = self.groups.get(jid)
            if g is not None and g.active is None and g.has_pending:
                started.append(self._dispatch(g))
        wanted = sum(1 for j in self.waiting if self.groups[j].active is None and self.groups[j].has_pending)
        closing = sum(1 for g in self.groups.values() if g.active is not None and g.active.state == "closing")
        idle = sorted((g.active.idle_since or "", jid) for jid, g in self.groups.items()
                      if g.active is not None and g.active.state == "idle")
        for _, jid in idle[:max(0, wanted - closing)]:
            self._close(self.groups[jid].active, "slot_wanted")  # type: ignore[arg-type]
        return started

    # -- decisions ----------------------------------------------------------------------------------------

    @staticmethod
    def _piped_turns(active: ActiveRun) -> list[QueuedRun]:
        dispatched = set(active.queued_run_ids)
        return [t for t in active.turns if t.run_id not in dispatched]

    @staticmethod
    def _batch(turns: list[QueuedRun]) -> list[QueuedRun]:
        """The front turns that fit in one prompt: at least one, then more while their messages stay within the
        first turn's ``batch_limit`` (the router's ``max_messages_per_prompt``; None: no limit, older logs)."""
        limit = turns[0].batch_limit
        batch, count = [turns[0]], len(turns[0].message_ids)
        for t in turns[1:]:
            if limit is not None and count + len(t.message_ids) > limit:
                break
            batch.append(t)
            count += len(t.message_ids)
        return batch

    def _close(self, a: ActiveRun, reason: str) -> None:
        if a.state != "closing":
            at = iso_utc(self.decided_at) if self.decided_at is not None else None
            self._close_requested(run_id=a.run_id, chat_jid=a.spec.chat_jid, group_folder=a.spec.group_folder,
                                  reason=reason, requested_at=at)

    def _task_pending(self, chat_jid: str, task_id: str | None) -> bool:
        g = self.groups.get(chat_jid)
        return g is not None and any(t.task_id == task_id for t in g.tasks)

    def _task_known(self, chat_jid: str, task_id: str) -> bool:
        active = self.active_run(chat_jid)
        return (active is not None and active.spec.task_id == task_id) or self._task_pending(chat_jid, task_id)

    def _dispatch(self, g: GroupState) -> str:
        if g.tasks:  # tasks first: they are not re-discovered like messages are (v1)
            t = g.tasks[0]
            self._dispatched(run_id=t.run_id, chat_jid=t.chat_jid, group_folder=t.group_folder, kind="task",
                             is_main=t.is_main, channel=t.channel, prompt=t.prompt, task_id=t.task_id, script=t.script,
                             context_mode=t.context_mode, turn_ids=[], queued_run_ids=[t.run_id], attempt=0)
            return t.run_id
        batch = self._batch(g.held + g.messages)  # a failed run's turns first, then the new ones, in order
        first, last = batch[0], batch[-1]  # coalesce: v1 hands the pending messages to one run
        run_id = first.run_id if first.tries == 0 else retry_run_id(first.run_id, first.tries)
        self._dispatched(run_id=run_id, chat_jid=g.chat_jid, group_folder=last.group_folder, kind="message",
                         is_main=last.is_main, channel=last.channel, prompt="\n".join(m.prompt for m in batch),
                         task_id=None, script=None, context_mode="group",
                         turn_ids=[m.turn_id for m in batch if m.turn_id],
                         queued_run_ids=[m.run_id for m in batch], attempt=g.retry_count)
        return run_id

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
                prompt: str, task_id: str | None, script: str | None, context_mode: str, turn_id: str | None,
                message_ids: list[str] | None = None, batch_limit: int | None = None, seq: int | None = None,
                queued_at: str | None = None) -> None:
        known = chat_jid in self.groups
        g = self._group(chat_jid, group_folder)
        # the running task's own id can only be queued as the re-run of its interruption (dedup forbids it otherwise)
        rerun = kind == "task" and g.active is not None and g.active.spec.task_id == task_id
        run = QueuedRun(run_id, kind, chat_jid, group_folder, is_main, channel, prompt, task_id, script, context_mode,
                        turn_id, rerun, list(message_ids or []), batch_limit, seq=seq, queued_at=queued_at)
        if kind == "task":
            g.tasks.append(run)
        elif seq is None:
            g.messages.append(run)  # older logs: arrival order
        else:
            self._in_order(g, run, known)
        self._wait(g)
        self.recent[run_id] = None
        while len(self.recent) > RECENT_RUNS:
            del self.recent[next(iter(self.recent))]

    def _in_order(self, g: GroupState, run: QueuedRun, known: bool) -> None:
        """Place an ordered turn: next in line → queued (with the held turns it lets through); ahead of a
        missing one → held in ``early``; late (its gap was skipped) → queued before the later turns. A group the
        queue knew before turns carried ordinals takes its first ordered turn as it comes; a new chat starts
        at 1."""
        seq = run.seq
        assert seq is not None
        expected = (g.last_seq + 1) if g.last_seq is not None else (seq if known else 1)
        if seq > expected:
            g.early = sorted(g.early + [run], key=lambda t: t.seq or 0)
            return
        if seq < expected:
            at = next((i for i, t in enumerate(g.messages) if t.seq is not None and t.seq > seq), len(g.messages))
            g.messages.insert(at, run)
            return
        g.messages.append(run)
        g.last_seq = seq
        self._admit_early(g)

    @staticmethod
    def _admit_early(g: GroupState) -> None:
        while g.early and g.early[0].seq is not None and g.last_seq is not None and g.early[0].seq <= g.last_seq + 1:
            t = g.early.pop(0)
            g.messages.append(t)
            g.last_seq = max(g.last_seq, t.seq or 0)

    @event("TurnGapSkipped")
    def _gap_skipped(self, chat_jid: str, group_folder: str, missing_from: int, missing_to: int,
                     waited_ms: int) -> None:
        g = self._group(chat_jid, group_folder)
        g.last_seq = missing_to
        self._admit_early(g)
        self._wait(g)

    @event("RunCloseTimedOut")
    def _close_timed_out(self, run_id: str, chat_jid: str, group_folder: str, waited_ms: int) -> None:
        pass  # the RunReleased in the same commit frees the group

    @event("RunDispatched")
    def _dispatched(self, run_id: str, chat_jid: str, group_folder: str, kind: str, is_main: bool, channel: str | None,
                    prompt: str, task_id: str | None, script: str | None, context_mode: str, turn_ids: list[str],
                    queued_run_ids: list[str], attempt: int) -> None:
        g = self._group(chat_jid, group_folder)
        ids = set(queued_run_ids)
        rerun = any(r.rerun for r in g.tasks if r.run_id in ids)
        g.tasks = [r for r in g.tasks if r.run_id not in ids]
        pool = g.held + g.messages if kind == "message" else g.messages
        turns = [r for r in pool if r.run_id in ids]
        for r in turns:
            r.tries += 1
        if kind == "message":
            g.held = []
        g.messages = [r for r in pool if r.run_id not in ids]
        spec = QueuedRun(run_id, kind, chat_jid, group_folder, is_main, channel, prompt, task_id, script, context_mode,
                         turn_ids[0] if turn_ids else None, rerun)
        g.active = ActiveRun(spec, list(turn_ids), list(queued_run_ids), attempt, turns=turns)
        if chat_jid in self.waiting:
            self.waiting.remove(chat_jid)
        self._wait(g)

    @event("RunIdled")
    def _idled(self, run_id: str, chat_jid: str, idle_since: str | None = None) -> None:
        a = self.groups[chat_jid].active
        assert a is not None
        a.state, a.answered, a.idle_since = "idle", len(a.turns), idle_since

    @event("RunInputPiped")
    def _piped(self, run_id: str, chat_jid: str, group_folder: str | None = None, prompt: str | None = None,
               turn_ids: list[str] | None = None, queued_run_ids: list[str] | None = None,
               message_ids: list[str] | None = None) -> None:
        g = self.groups[chat_jid]
        a = g.active
        assert a is not None
        a.state = "running"  # (older logs: a follow-up the router piped itself; no turns move)
        ids = set(queued_run_ids or ())
        pool = g.held + g.messages
        a.turns += [r for r in pool if r.run_id in ids]
        if ids:
            g.held = [r for r in g.held if r.run_id not in ids]
            g.messages = [r for r in g.messages if r.run_id not in ids]

    @event("RunInputRequeued")
    def _requeued(self, run_id: str, chat_jid: str, queued_run_ids: list[str], reason: str) -> None:
        g = self.groups[chat_jid]
        a = g.active
        assert a is not None
        ids = set(queued_run_ids)
        back = [t for t in a.turns if t.run_id in ids]
        a.turns = [t for t in a.turns if t.run_id not in ids]
        g.messages = back + g.messages

    @event("RunCloseRequested")
    def _close_requested(self, run_id: str, chat_jid: str, group_folder: str, reason: str,
                         requested_at: str | None = None) -> None:
        a = self.groups[chat_jid].active
        assert a is not None
        a.state, a.closing_since = "closing", requested_at

    @event("RunReleased")
    def _released(self, run_id: str, chat_jid: str, group_folder: str, kind: str, outcome: str,
                  answered: int | None = None) -> None:
        g = self._group(chat_jid, group_folder)
        a = g.active
        left = a.turns[answered:] if a is not None and answered is not None else []
        g.active = None
        if kind == "message" and outcome == "succeeded":
            g.retry_count = 0  # v1: a successful message run resets the backoff
            g.messages = left + g.messages  # taken but never answered: first in line, at once
        elif kind == "message":
            g.held = left + g.held  # retried after the backoff (or with the next turn, whichever comes first)
        self._wait(g)

    @event("RunRetryScheduled")
    def _retry_scheduled(self, chat_jid: str, group_folder: str, failed_run_id: str, attempt: int, delay_ms: int,
                         due_at: str) -> None:
        g = self._group(chat_jid, group_folder)
        g.retry_count = attempt
        g.retries[attempt] = due_at

    @event("MessageRetryDue")
    def _retry_became_due(self, chat_jid: str, attempt: int) -> None:
        g = self.groups[chat_jid]
        g.retries.pop(attempt, None)
        g.messages = g.held + g.messages
        g.held = []
        self._wait(g)

    @event("RunAbandoned")
    def _abandoned(self, chat_jid: str, group_folder: str, run_id: str, attempts: int, reason: str) -> None:
        self._group(chat_jid, group_folder).retry_count = 0  # v1: start afresh with the next message
