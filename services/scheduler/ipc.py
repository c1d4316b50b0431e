"""The scheduling tools agents call (NATS requests ``nc.ipc.<folder>.<tool>``): ``schedule_task``,
``list_tasks``, ``pause_task``, ``resume_task``, ``cancel_task``, ``update_task``.

Identity is the subject's folder token (the NATS server lets a run publish only under its own folder).
Authorization as NanoClaw v1 ipc.ts (nanoclaw-behaviour §11.3–11.4): the main group may schedule for any
registered chat and manage every task; other groups only their own. A target chat that is not registered
is refused, even for main (v1, quirk 17). Unlike v1 (quirk 18), the answer says what happened: the task's
id and next run, or why nothing was done.
"""

from __future__ import annotations

from projections.chat import GroupRef, group_by_folder, group_by_jid
from services.harness.natsauth import IPC_PREFIX
from services.harness.service import Emit, Reply, Request
from services.scheduler import commands, queries
from services.scheduler.claims import SchedulerDeps
from services.scheduler.schedule import local_time
from services.scheduler.task import ScheduledTask


def _msg_id(req: Request, me: GroupRef) -> str:
    return f"ipc:{me.folder}:{req.token(3)}:{req.request_id}"


def _requester(req: Request, deps: SchedulerDeps) -> GroupRef | None:
    """The requesting group (the harness has caught the read model up before calling the handler)."""
    return group_by_folder(deps.readmodel, req.token(2))


def _unknown(req: Request) -> Reply:
    return Reply.failure(f"no registered group has folder {req.token(2)!r}")


async def schedule_task(req: Request, deps: SchedulerDeps) -> Reply:
    """Args (JSON): ``prompt``, ``schedule_type`` (cron|interval|once), ``schedule_value``; optional
    ``context_mode`` (group|isolated, default group), ``script``, ``catch_up`` (skip|once|all, default once),
    ``timezone`` (IANA, default the configured one), ``target_group_jid`` (main only).
    Answer: ``"Task <id> scheduled: <type> - <value>; next run <local time>"``."""
    me = _requester(req, deps)
    if me is None:
        return _unknown(req)
    target_jid = req.data.get("target_group_jid") or me.jid
    if target_jid != me.jid and not me.is_main:
        return Reply.refusal(f"group {me.folder!r} may only schedule tasks for its own chat ({me.jid}); only the "
                             "main group may schedule for other groups")
    target = group_by_jid(deps.readmodel, target_jid) if isinstance(target_jid, str) else None
    if target is None:
        return Reply.failure(f"{target_jid!r} is not a registered group; register it first")
    try:
        task = commands.schedule(req.data, group=target, timezone=deps.timezone, now=deps.clock.now(), by=me.folder)
    except ValueError as exc:
        return Reply.failure(str(exc))
    text = f"Task {task.id} scheduled: {task.schedule_type} - {task.schedule_value}; next run {_local(task)}"
    return Reply.success(text, Emit.of(task, msg_id=_msg_id(req, me)))


async def list_tasks(req: Request, deps: SchedulerDeps) -> Reply:
    """Answer: one line per task (the main group sees every group's), or "No scheduled tasks found."."""
    me = _requester(req, deps)
    if me is None:
        return _unknown(req)
    rows = queries.tasks(deps.readmodel, None if me.is_main else me.folder)
    if not rows:
        return Reply.success("No scheduled tasks found.")
    lines = [f"- [{r['id']}] {_short(r['prompt'])} ({r['schedule_type']}: {r['schedule_value']}) - {r['status']}, "
             f"next: {local_time(r['next_run'], r['timezone'])}" + ("" if not me.is_main else f" [group {r['group_folder']}]") for r in rows]
    return Reply.success("Scheduled tasks:\n" + "\n".join(lines))


async def _change(req: Request, deps: SchedulerDeps, verb: str, apply) -> Reply:
    me = _requester(req, deps)
    if me is None:
        return _unknown(req)
    task_id = req.data.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        return Reply.failure("'task_id' is required")
    task = await deps.repository.get(ScheduledTask, task_id)
    if task is None or task.status == "cancelled":
        return Reply.failure(f"no task {task_id!r}")
    if task.group_folder != me.folder and not me.is_main:
        return Reply.refusal(f"task {task_id} belongs to group {task.group_folder!r}; only the main group may "
                             "change other groups' tasks")
    try:
        apply(task, me)
    except ValueError as exc:
        return Reply.failure(str(exc))
    return Reply.success(f"Task {task_id} {verb}." + (f" Next run {_local(task)}." if task.status == "active" else ""),
                         Emit.of(task, msg_id=_msg_id(req, me)))


async def pause_task(req: Request, deps: SchedulerDeps) -> Reply:
    return await _change(req, deps, "paused", lambda t, me: t.pause(by=me.folder))


async def resume_task(req: Request, deps: SchedulerDeps) -> Reply:
    return await _change(req, deps, "resumed", lambda t, me: t.resume(now=deps.clock.now(), by=me.folder))


async def cancel_task(req: Request, deps: SchedulerDeps) -> Reply:
    return await _change(req, deps, "cancelled", lambda t, me: t.cancel(by=me.folder))


async def update_task(req: Request, deps: SchedulerDeps) -> Reply:
    """Args: ``task_id``; optional ``prompt``, ``script`` ("" removes it), ``schedule_type``,
    ``schedule_value``, ``timezone``, ``context_mode``, ``catch_up``."""
    return await _change(req, deps, "updated",
                         lambda t, me: commands.update(t, req.data, now=deps.clock.now(), by=me.folder))


def _short(prompt: str) -> str:
    return prompt[:50] + ("..." if len(prompt) > 50 else "")


def _local(task: ScheduledTask) -> str:
    return local_time(task.next_run, task.timezone)


REQUESTS = {f"{IPC_PREFIX}.*.{name}": handler for name, handler in {
    "schedule_task": schedule_task, "list_tasks": list_tasks, "pause_task": pause_task, "resume_task": resume_task,
    "cancel_task": cancel_task, "update_task": update_task}.items()}
