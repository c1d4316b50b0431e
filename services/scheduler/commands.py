"""Task commands shared by the agents' tools (ipc.py) and ``nanoclaw tasks``: validate the request and
change the aggregate; the caller authorises and stores.

Defaults, the same for every caller: ``context_mode`` ``group`` (``DEFAULT_CONTEXT_MODE``), ``catch_up``
``once``, the time zone configured for the assistant.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from events.catalogue.scheduler import DEFAULT_CATCH_UP, DEFAULT_CONTEXT_MODE
from projections.chat import GroupRef
from services.scheduler.schedule import Schedule
from services.scheduler.task import ScheduledTask, TaskError


_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def new_task_id(now: datetime) -> str:
    """``task-<epoch ms>-<6 random chars>``, as v1."""
    return f"task-{int(now.timestamp() * 1000)}-{secrets.token_hex(3)}"


def schedule(data: dict[str, Any], *, group: GroupRef, timezone: str, now: datetime, by: str) -> ScheduledTask:
    """A new task for ``group`` from request fields ``prompt``, ``schedule_type``, ``schedule_value`` and
    optional ``context_mode``, ``script``, ``catch_up``, ``timezone``, ``task_id``.

    Raises: TaskError or ScheduleError (both ValueError) naming the bad field."""
    spec = Schedule.parse(_text(data, "schedule_type"), _text(data, "schedule_value"),
                          _text(data, "timezone", required=False) or timezone)
    task_id = _text(data, "task_id", required=False) or new_task_id(now)
    if not _TASK_ID.fullmatch(task_id):
        raise TaskError(f"task_id {task_id!r} must be 1-128 letters, digits, '_', '.', ':' or '-'")
    return ScheduledTask.schedule(
        task_id=task_id, group_folder=group.folder,
        chat_jid=group.jid, prompt=_text(data, "prompt"), schedule=spec,
        context_mode=_text(data, "context_mode", required=False) or DEFAULT_CONTEXT_MODE,
        script=_text(data, "script", required=False, empty_ok=True), now=now, by=by,
        catch_up=_text(data, "catch_up", required=False) or DEFAULT_CATCH_UP)


def update(task: ScheduledTask, data: dict[str, Any], *, now: datetime, by: str) -> None:
    """Apply optional ``prompt``, ``script`` (``""`` removes it), ``schedule_type``, ``schedule_value``,
    ``timezone``, ``context_mode``, ``catch_up``. A value without a type keeps the task's type and is
    validated as that type (v1 validated it as cron, quirk 16).

    Raises: TaskError or ScheduleError naming the problem; nothing changes then."""
    type_ = _text(data, "schedule_type", required=False)
    value = _text(data, "schedule_value", required=False)
    tz = _text(data, "timezone", required=False)
    spec = None
    if type_ or value or tz:
        if type_ and type_ != task.schedule_type and not value:
            raise TaskError(f"changing the schedule type to {type_!r} needs a schedule_value too")
        spec = Schedule.parse(type_ or task.schedule_type, value or task.schedule_value, tz or task.timezone)
    task.update(now=now, by=by, prompt=_text(data, "prompt", required=False), schedule=spec,
                script=_text(data, "script", required=False, empty_ok=True),
                context_mode=_text(data, "context_mode", required=False),
                catch_up=_text(data, "catch_up", required=False))


def _text(data: dict[str, Any], key: str, *, required: bool = True, empty_ok: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise TaskError(f"{key!r} is required")
        return None
    if not isinstance(value, str):
        raise TaskError(f"{key!r} must be a string, got {type(value).__name__}")
    if not value.strip() and not empty_ok:
        raise TaskError(f"{key!r} must not be empty")
    return value
