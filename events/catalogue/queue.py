"""Group-queue events (issue: agent runs). The queue is one aggregate (``queue/runqueue/default``): its state
is who waits, who runs, and each group's retry count, and every decision is an optimistic-concurrency append
on it, so a redelivered or duplicated trigger can never start a second run for a group.

Rules as NanoClaw v1 group-queue (nanoclaw-behaviour §13): one run per group, a global cap, tasks before
messages, a waiting task closes an idle message run, failed message runs retried after 5, 10, 20, 40, 80 s.

The queue is also the one owner of a run's lifecycle (issue 13): starting → idle ⇄ running → closing →
finished. The runner and the router follow these events; neither keeps its own opinion of a run's state
(docs/agent-runs.md, "Run lifecycle: one owner, the queue").
"""

from __future__ import annotations

import uuid
from typing import Literal

from events.catalogue.base import EventPayload
from events.catalogue.types import UtcTimestamp

RunKind = Literal["message", "task"]
ContextMode = Literal["group", "isolated"]

# Run ids are part of the contract: a redelivered trigger maps to the same run, and the scheduler can tell
# which runs carry its task run request (the first attempt, and the one re-run of an interrupted attempt).
_RUN_NS = uuid.UUID("3d6f4b1e-2a7c-4f0e-9b8d-51c2a7e9f034")


def message_run_id(turn_id: str) -> str:
    """The run id of the router turn ``turn_id``."""
    return str(uuid.uuid5(_RUN_NS, f"turn:{turn_id}"))


def task_run_id(scheduler_run_id: str) -> str:
    """The run id of the task run request ``scheduler_run_id`` (``TaskRunRequested.run_id``)."""
    return str(uuid.uuid5(_RUN_NS, f"task:{scheduler_run_id}"))


def retry_run_id(run_id: str, tries: int) -> str:
    """The run id of the ``tries``-th new run (1-based) of turns first queued as ``run_id`` (a retry after a
    failed run: a run id is never used twice)."""
    return str(uuid.uuid5(_RUN_NS, f"retry:{run_id}:{tries}"))


def rerun_id(run_id: str) -> str:
    """The run id of the one re-run of an interrupted task run."""
    return str(uuid.uuid5(_RUN_NS, f"rerun:{run_id}"))


class _QueueEvent(EventPayload):
    context = "queue"
    aggregate = "runqueue"


class _RunSpec(_QueueEvent):
    run_id: str
    chat_jid: str
    group_folder: str
    kind: RunKind = "message"
    is_main: bool = False
    channel: str | None = None
    prompt: str
    task_id: str | None = None
    script: str | None = None
    context_mode: ContextMode = "group"


class RunQueueOpened(_QueueEvent):
    """The queue aggregate's first event, committed together with its first decision (an aggregate needs a
    creation event; the queue has no fields of its own: its limits are configuration, not state)."""


class RunQueued(_RunSpec):
    """A run request entered the group queue (from ``AgentTurnRequested`` or ``TaskRunRequested``).
    ``turn_id`` is the router's turn for message runs, ``message_ids`` its messages and ``batch_limit`` the
    router's per-prompt cap (turns are joined into one prompt only within it; None in older logs). ``seq``: the
    turn's ordinal in its chat (``AgentTurnRequested.seq``; None in older logs and for tasks): a turn whose
    earlier turns have not arrived is held until they do (or ``TurnGapSkipped``). ``queued_at``: when it was
    queued (the gap wait's start)."""

    turn_id: str | None = None
    message_ids: list[str] = []
    batch_limit: int | None = None
    seq: int | None = None
    queued_at: UtcTimestamp | None = None


class RunDispatched(_RunSpec):
    """The queue granted a slot: the runner starts this run now. Message runs queued for the same group
    before the slot freed are coalesced into one run: ``turn_ids`` lists their turns (oldest first) and
    ``prompt`` joins their prompts with a newline (as v1 joins pending input). ``attempt`` counts the
    group's consecutive failed message runs before this one."""

    turn_ids: list[str] = []
    queued_run_ids: list[str] = []
    attempt: int = 0


class RunIdled(_QueueEvent):
    """A run ended a query and waits for input (v1 notifyIdle): the turns it was given are answered and the
    idle timer starts at ``idle_since`` (None in older logs). State: starting/running → idle."""

    run_id: str
    chat_jid: str
    idle_since: UtcTimestamp | None = None


class RunInputPiped(_QueueEvent):
    """Waiting turns go into the group's idle message run as its next query (v1 sendMessage): the runner hands
    ``prompt`` (the turns' prompts joined by a newline) to the agent. State: idle → running. Older logs carry
    only ``run_id`` and ``chat_jid`` (a follow-up the router had piped itself)."""

    run_id: str
    chat_jid: str
    group_folder: str | None = None
    prompt: str | None = None
    turn_ids: list[str] = []
    queued_run_ids: list[str] = []
    message_ids: list[str] = []


class RunInputRequeued(_QueueEvent):
    """Piped turns never reached the run (``AgentInputReturned``): they go back to the front of the group's
    turns, in order, and the run is closed so the next run takes them at once."""

    run_id: str
    chat_jid: str
    queued_run_ids: list[str]
    reason: str


class RunCloseRequested(_QueueEvent):
    """The queue asks the runner to end a run (v1 ``_close``); the agent finishes its current query and exits.
    State: → closing. ``reason``: ``idle_timeout`` (``queue.idle_timeout_ms`` after it idled), ``task_done``
    (a task run ``queue.task_close_delay_ms`` after its result), ``task_waiting`` / ``turn_waiting`` (work for
    the group that this run cannot take), ``slot_wanted`` (another group waits for a slot), ``input_returned``
    (the run could not take piped turns), ``shutdown``."""

    run_id: str
    chat_jid: str
    group_folder: str
    reason: Literal["task_waiting", "turn_waiting", "slot_wanted", "idle_timeout", "task_done", "input_returned",
                    "shutdown"]
    requested_at: UtcTimestamp | None = None


class RunCloseTimedOut(_QueueEvent):
    """A run asked to close did not end (no ``AgentRunFinished``) within ``queue.close_timeout_ms``: the queue
    gives up on it and releases its group (a ``RunReleased`` follows in the same commit; its unanswered turns are
    retried as after a failed run), so a run that cannot be reached never holds its group forever. The runner
    follows this event and kills the run's sandbox if it still exists. ``waited_ms``: since the close request."""

    run_id: str
    chat_jid: str
    group_folder: str
    waited_ms: int


class RunReleased(_QueueEvent):
    """A run ended and its slot is free (state: → finished). ``outcome``: ``succeeded`` (also a failure that
    left no turn unanswered, which v1 treats as handled), ``failed``. ``answered``: how many of the run's turns
    it answered; the rest go back to the group (at once after a success, after the backoff after a failure).
    None in older logs."""

    run_id: str
    chat_jid: str
    group_folder: str
    kind: RunKind = "message"
    outcome: Literal["succeeded", "failed"]
    answered: int | None = None


class RunRetryScheduled(_QueueEvent):
    """A message run failed before any output reached the user: the group is checked again at ``due_at``
    (``attempt`` 1..5, delay 5 s · 2^(attempt-1), as v1 group-queue)."""

    chat_jid: str
    group_folder: str
    failed_run_id: str
    attempt: int
    delay_ms: int
    due_at: UtcTimestamp


class MessageRetryDue(_QueueEvent):
    """A scheduled retry is due: the failed run's turns rejoin the front of the group and are dispatched. (In
    older logs the router read the rolled-back messages again instead.)"""

    chat_jid: str
    attempt: int


class RunAbandoned(_QueueEvent):
    """The group's message runs failed ``attempts`` times in a row: no more retries until the next message
    (v1 gives up silently; here it is an event)."""

    chat_jid: str
    group_folder: str
    run_id: str
    attempts: int
    reason: str


class TurnGapSkipped(_QueueEvent):
    """A chat's turn arrived ahead of an earlier one (its ``seq`` is past the next one the queue expects), the
    earlier turns did not arrive within ``queue.turn_gap_timeout_ms``, and the queue stopped waiting for them: the
    held turns are queued now. ``missing_from``..``missing_to``: the ordinals never seen (inclusive);
    ``waited_ms``: since the first held turn arrived. Normally a turn the queue had fetched but not acked when it
    died comes back after the consumer's ack wait and fills the gap long before this."""

    chat_jid: str
    group_folder: str
    missing_from: int
    missing_to: int
    waited_ms: int
