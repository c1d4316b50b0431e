"""Group-queue events (issue: agent runs). The queue is one aggregate (``queue/runqueue/default``): its state
is who waits, who runs, and each group's retry count, and every decision is an optimistic-concurrency append
on it, so a redelivered or duplicated trigger can never start a second run for a group.

Rules as NanoClaw v1 group-queue (nanoclaw-behaviour §13): one run per group, a global cap, tasks before
messages, a waiting task closes an idle message run, failed message runs retried after 5, 10, 20, 40, 80 s.
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
    ``turn_id`` is the router's turn for message runs."""

    turn_id: str | None = None


class RunDispatched(_RunSpec):
    """The queue granted a slot: the runner starts this run now. Message runs queued for the same group
    before the slot freed are coalesced into one run: ``turn_ids`` lists their turns (oldest first) and
    ``prompt`` joins their prompts with a newline (as v1 joins pending input). ``attempt`` counts the
    group's consecutive failed message runs before this one."""

    turn_ids: list[str] = []
    queued_run_ids: list[str] = []
    attempt: int = 0


class RunIdled(_QueueEvent):
    """A message run reported a result and now waits for input (v1 notifyIdle)."""

    run_id: str
    chat_jid: str


class RunInputPiped(_QueueEvent):
    """A follow-up went into a running message run, so it is no longer idle (v1 sendMessage)."""

    run_id: str
    chat_jid: str


class RunCloseRequested(_QueueEvent):
    """The queue asks the runner to end a run's input (v1 ``_close``): a task waits for an idle message run,
    or the service is shutting down. The agent finishes its current query and exits."""

    run_id: str
    chat_jid: str
    group_folder: str
    reason: Literal["task_waiting", "shutdown"]


class RunReleased(_QueueEvent):
    """A run ended and its slot is free. ``outcome``: ``succeeded`` (also a failure after output reached the
    user, which v1 treats as handled), ``failed``."""

    run_id: str
    chat_jid: str
    group_folder: str
    kind: RunKind = "message"
    outcome: Literal["succeeded", "failed"]


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
    """A scheduled retry is due: the router re-reads the group's pending messages and requests a turn."""

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
