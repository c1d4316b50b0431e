"""``nanoclaw tasks list|add|pause|resume|cancel|update|runs``: scheduled tasks (scheduler.task aggregates).

The same commands and defaults as the agents' scheduling tools (services/scheduler/commands.py); the owner
at the terminal may manage every group's tasks. Times are shown in each task's own time zone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from events.catalogue.scheduler import DEFAULT_CATCH_UP, DEFAULT_CONTEXT_MODE
from events.errors import ConcurrencyError
from events.repository import Repository
from projections.chat import RegisteredGroups, group_refs
from projections.scheduler import ScheduledTasks, TaskRunLogs
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.cli import output
from services.cli.rebuilt import rebuilt, rebuilt_rows
from services.harness.clock import SystemClock
from services.scheduler import commands, queries
from services.scheduler.schedule import Schedule, local_time
from services.scheduler.task import ScheduledTask, TaskError

app = typer.Typer(help="Manage scheduled tasks.", no_args_is_help=True)
BY = "cli"


def _fail(exc: Exception) -> None:
    output.error_line(console, exc)
    raise typer.Exit(2)


def _local(when: str | None, tz: str) -> str:
    return local_time(when, tz, missing="—")


@app.command("list")
def list_(group: str | None = typer.Option(None, help="only this group folder"),
          as_json: bool = typer.Option(False, "--json", help="NDJSON: one compact object per task per line"),
          config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Show scheduled tasks with their next and last run."""
    settings, creds = load(config, credentials)

    async def go():
        async with bus(settings, creds, name="nanoclaw-tasks") as (_nc, store):
            async with rebuilt(store, [ScheduledTasks()]) as rm:
                return [dict(r) for r in queries.tasks(rm, group or None)]

    tasks = run(go())
    if as_json:
        output.print_ndjson(tasks)
        return
    table = output.table("id", "group", "schedule", "status", "next run", "last run", "last result", "context", "catch-up")
    for t in tasks:
        output.add_row(table, t["id"], t["group_folder"], f"{t['schedule_type']}: {t['schedule_value']} ({t['timezone']})",
                      t["status"] + (" (running)" if t["running_run_id"] else ""), _local(t["next_run"], t["timezone"]),
                      _local(t["last_run"], t["timezone"]), (t["last_result"] or "")[:40], t["context_mode"], t["catch_up"])
    output.print_table(out, table)


@app.command()
def add(group: str = typer.Argument(..., help="group folder or chat JID"),
        prompt: str = typer.Option(..., help="what the assistant does when the task runs"),
        cron: str | None = typer.Option(None, help="5-field cron in the task's time zone, e.g. '0 9 * * 1-5'"),
        interval: str | None = typer.Option(None, help="milliseconds between runs, e.g. 3600000"),
        once: str | None = typer.Option(None, help="a local time, e.g. 2026-02-01T15:30:00 (or with an offset); "
                                                   "a past time is refused unless --now is given"),
        now: bool = typer.Option(False, "--now", help="run once right away (alone), or accept a --once time "
                                                     "in the past and run it right away"),
        context_mode: str = typer.Option(DEFAULT_CONTEXT_MODE, help="group (the group's session) or isolated"),
        catch_up: str = typer.Option(DEFAULT_CATCH_UP, help="after downtime: skip, once or all"),
        timezone: str | None = typer.Option(None, help="IANA zone (default: the configured one)"),
        script: str | None = typer.Option(None, help="bash pre-check; the agent wakes only if it says so"),
        config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Schedule a task for a registered group (exactly one of --cron, --interval, --once)."""
    settings, creds = load(config, credentials)
    if now and once is None and cron is None and interval is None:
        once = SystemClock().now().isoformat()  # --now alone: a one-off run right away
    chosen = [(t, v) for t, v in (("cron", cron), ("interval", interval), ("once", once)) if v is not None]
    if len(chosen) != 1:
        _fail(ValueError("give exactly one of --cron, --interval, --once (or --now)"))
    (schedule_type, value), = chosen
    if schedule_type == "once":
        try:
            _refuse_past(value, timezone or settings.timezone, now)
        except ValueError as exc:
            _fail(exc)

    async def go() -> ScheduledTask:
        async with bus(settings, creds, name="nanoclaw-tasks") as (_nc, store):
            async with rebuilt(store, [RegisteredGroups()]) as rm:
                target = next((g for g in group_refs(rm) if group in (g.folder, g.jid)), None)
            if target is None:
                raise TaskError(f"{group!r} is not a registered group (see `nanoclaw groups list`)")
            task = commands.schedule(
                {"prompt": prompt, "schedule_type": schedule_type, "schedule_value": value, "script": script,
                 "context_mode": context_mode, "catch_up": catch_up, "timezone": timezone},
                group=target, timezone=settings.timezone,
                now=SystemClock().now(), by=BY)
            await Repository(store, BY).save(task)
            return task

    try:
        task = run(go())
    except (ValueError, ConcurrencyError) as exc:
        _fail(exc)
    output.say(out, f"scheduled {task.id} for {task.group_folder}: {task.schedule_type} {task.schedule_value}; "
                    f"next run {_local(task.next_run, task.timezone)}")


def _refuse_past(once: str, tz: str, now_given: bool) -> None:
    """A ``--once`` time already past would run at once without a word (as the agents' tool does, v1's rule);
    at the terminal that is almost always a typo (a wrong day or year), so it needs ``--now`` (issue 16).

    Raises: ValueError (ScheduleError) for an unreadable time, or a past one without ``--now``."""
    at = Schedule.parse("once", once, tz).once_at()
    current = SystemClock().now()
    if at < current and not now_given:
        raise ValueError(f"--once {once} is in the past ({at:%Y-%m-%d %H:%M} UTC, now {current:%Y-%m-%d %H:%M} UTC, "
                         f"read in {tz}); give a future time, or add --now to run it right away")


def _change(settings, creds, task_id: str, change) -> ScheduledTask:
    async def go() -> ScheduledTask:
        async with bus(settings, creds, name="nanoclaw-tasks") as (_nc, store):
            repo = Repository(store, BY)
            task = await repo.get(ScheduledTask, task_id)
            if task is None or task.status == "cancelled":
                raise TaskError(f"no task {task_id!r} (see `nanoclaw tasks list`)")
            change(task)
            await repo.save(task)
            return task

    try:
        return run(go())
    except (ValueError, ConcurrencyError) as exc:
        _fail(exc)
        raise


@app.command()
def pause(task_id: str, config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Stop a task from firing until it is resumed."""
    settings, creds = load(config, credentials)
    _change(settings, creds, task_id, lambda t: t.pause(by=BY))
    output.say(out, f"paused {task_id}")


@app.command()
def resume(task_id: str, config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Resume a paused task (runs missed while paused are not caught up)."""
    settings, creds = load(config, credentials)
    task = _change(settings, creds, task_id, lambda t: t.resume(now=SystemClock().now(), by=BY))
    output.say(out, f"resumed {task_id}; next run {_local(task.next_run, task.timezone)}")


@app.command()
def cancel(task_id: str, config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Delete a task (its events stay in the log)."""
    settings, creds = load(config, credentials)
    _change(settings, creds, task_id, lambda t: t.cancel(by=BY))
    output.say(out, f"cancelled {task_id}")


@app.command()
def update(task_id: str, prompt: str | None = typer.Option(None), cron: str | None = typer.Option(None),
           interval: str | None = typer.Option(None), once: str | None = typer.Option(None),
           now: bool = typer.Option(False, "--now", help="accept a --once time in the past (it runs right away)"),
           context_mode: str | None = typer.Option(None), catch_up: str | None = typer.Option(None),
           timezone: str | None = typer.Option(None),
           script: str | None = typer.Option(None, help="'' removes the script"),
           config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Change a task; a new schedule recomputes its next run."""
    settings, creds = load(config, credentials)
    chosen = [(t, v) for t, v in (("cron", cron), ("interval", interval), ("once", once)) if v is not None]
    if len(chosen) > 1:
        _fail(ValueError("give at most one of --cron, --interval, --once"))
    data: dict[str, Any] = {"prompt": prompt, "context_mode": context_mode, "catch_up": catch_up,
                            "timezone": timezone, "script": script}
    if chosen:
        data["schedule_type"], data["schedule_value"] = chosen[0]
    def change(t: ScheduledTask) -> None:
        if once is not None:
            _refuse_past(once, timezone or t.timezone, now)
        commands.update(t, data, now=SystemClock().now(), by=BY)

    task = _change(settings, creds, task_id, change)
    output.say(out, f"updated {task_id}; next run {_local(task.next_run, task.timezone)}")


@app.command()
def runs(task_id: str, limit: int = typer.Option(20, min=1),
         as_json: bool = typer.Option(False, "--json", help="NDJSON: one compact object per run per line"),
         config: Path | None = ConfigOption,
         credentials: Path | None = CredentialsOption) -> None:
    """A task's run log, newest first."""
    settings, creds = load(config, credentials)

    async def go():
        async with bus(settings, creds, name="nanoclaw-tasks") as (_nc, store):
            return await rebuilt_rows(store, [TaskRunLogs()],
                                      "SELECT * FROM task_run_logs WHERE task_id = ? ORDER BY run_at DESC LIMIT ?",
                                      (task_id, limit))

    rows = run(go())
    if as_json:
        output.print_ndjson(dict(r) for r in rows)
        return
    table = output.table("run at (UTC)", "status", "duration ms", "result / error")
    for r in rows:
        output.add_row(table, r["run_at"], r["status"], str(r["duration_ms"]), (r["error"] or r["result"] or "")[:80])
    output.print_table(out, table)
