"""Agent-run events (the container runner emits them; the router consumes outputs)."""

from __future__ import annotations

from typing import Literal

from events.catalogue.base import EventPayload


class AgentRunStarted(EventPayload):
    """A sandboxed agent run started for a group. Aggregate id: the run id."""

    context = "agent"
    aggregate = "run"

    run_id: str
    chat_jid: str
    group_folder: str
    kind: Literal["message", "task"] = "message"
    turn_id: str | None = None


class AgentOutputProduced(EventPayload):
    """One streamed result of a run (between the output markers). ``text`` may hold ``<internal>`` blocks;
    the router strips them. ``text`` is None for a result with no user-facing output. Aggregate id: the run id."""

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


class AgentRunFinished(EventPayload):
    """A run ended. ``output_delivered`` tells the router whether to keep or roll back the cursor.
    Aggregate id: the run id."""

    context = "agent"
    aggregate = "run"

    run_id: str
    chat_jid: str
    group_folder: str
    status: Literal["succeeded", "failed", "timed_out"]
    output_delivered: bool = False
    error: str | None = None
