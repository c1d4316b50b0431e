"""Scheduler events (issue: scheduler). Only the queue's input is defined so far."""

from __future__ import annotations

from events.catalogue.base import EventPayload
from events.catalogue.queue import ContextMode


class TaskRunRequested(EventPayload):
    """A scheduled task is due and should run as a task run in the group queue. A task already queued or
    running is not queued twice (v1 #138). Aggregate id: the task id."""

    context = "scheduler"
    aggregate = "task"

    task_id: str
    run_id: str
    chat_jid: str
    group_folder: str
    is_main: bool = False
    prompt: str
    script: str | None = None
    context_mode: ContextMode = "isolated"
