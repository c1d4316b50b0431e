"""Agent-run events: the container runner emits them (the router turns outputs into replies; the queue frees
slots on ``AgentRunFinished``). Aggregate id: the run id, except sessions (the group folder)."""

from __future__ import annotations

from typing import Literal

from events.catalogue.base import EventPayload


class AgentRunStarted(EventPayload):
    """A sandboxed agent run started for a group. ``turn_id`` is the first router turn the run answers (the
    one a roll-back returns to); ``backend`` names the sandbox (docker, apple-container, process)."""

    context = "agent"
    aggregate = "run"

    run_id: str
    chat_jid: str
    group_folder: str
    kind: Literal["message", "task"] = "message"
    turn_id: str | None = None
    task_id: str | None = None
    backend: str | None = None
    container: str | None = None


class AgentOutputProduced(EventPayload):
    """One streamed result of a run (between the output markers). ``text`` may hold ``<internal>`` blocks;
    the router strips them. ``text`` is None for a result with no user-facing output. ``idle``: the agent
    ended its query and waits for input (the queue's ``RunIdled``); None from an agent that does not say, where
    every success counts as idle (older logs)."""

    context = "agent"
    aggregate = "run"

    run_id: str
    chat_jid: str
    group_folder: str
    channel: str | None = None
    text: str | None = None
    status: Literal["success", "error"] = "success"
    session_id: str | None = None
    error: str | None = None
    idle: bool | None = None


class AgentInputDelivered(EventPayload):
    """Piped turns (``RunInputPiped``) were taken by the running agent: it answered the runner's request."""

    context = "agent"
    aggregate = "run"

    run_id: str
    chat_jid: str
    group_folder: str
    message_ids: list[str]
    turn_ids: list[str] = []


class AgentInputReturned(EventPayload):
    """Piped turns could not reach the run (it had ended, or the agent did not answer): the queue puts them
    back at the front of the group's turns (``RunInputRequeued``), so no message is lost or reordered."""

    context = "agent"
    aggregate = "run"

    run_id: str
    chat_jid: str
    group_folder: str
    turn_ids: list[str]
    queued_run_ids: list[str]
    message_ids: list[str]
    reason: str


class AgentInputRejected(EventPayload):
    """Legacy (older logs; no longer recorded): a follow-up the router had piped itself missed its run, and
    the router requested a new turn with it. Piped turns that miss their run are now ``AgentInputReturned``."""

    context = "agent"
    aggregate = "run"

    run_id: str
    chat_jid: str
    group_folder: str
    prompt: str
    message_ids: list[str]
    previous_cursor: str
    reason: str


class AgentRunFinished(EventPayload):
    """A run ended. ``output_delivered`` tells the router whether to keep or roll back the cursor.
    ``interrupted``: the runner restarted during the run and stopped its container (the queue re-runs an
    interrupted task once; message runs go through the normal retry)."""

    context = "agent"
    aggregate = "run"

    run_id: str
    chat_jid: str
    group_folder: str
    status: Literal["succeeded", "failed", "timed_out"]
    output_delivered: bool = False
    error: str | None = None
    duration_ms: int | None = None
    interrupted: bool = False


class AgentSessionReset(EventPayload):
    """The stored Claude session of a group can no longer be resumed (v1: "no conversation found"): the next
    run starts a fresh one. Aggregate id: the group folder."""

    context = "agent"
    aggregate = "session"

    group_folder: str
    session_id: str
    reason: str
