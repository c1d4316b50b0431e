"""``nanoclaw status`` (the queue: depth per group and in total, waits, run durations, retries, abandons, plus
failures and open dead letters) and ``nanoclaw failures`` (failed and abandoned runs, newest first). Both read
the log itself (the read models rebuilt in memory, services/cli/rebuilt.py), so they are right whether or not
the projections service runs; ``/metrics`` shows the same numbers (services/projector/queue_metrics.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from projections.queue_stats import QueueSnapshot, QueueStats, snapshot
from projections.run_failures import RunFailures, failure_counts, recent_failures
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, load, out, run
from services.cli.deadletters import open_dead_letters
from services.cli.rebuilt import rebuilt

JsonOption = typer.Option(False, "--json", help="one JSON object per line (NDJSON)")


def status(as_json: bool = JsonOption, config: Path | None = ConfigOption,
           credentials: Path | None = CredentialsOption) -> None:
    """What the system is doing: queue depth per group, wait and run times, retries, abandons, failures, dead letters."""
    settings, creds = load(config, credentials)
    snap, failures, dead = run(_status(settings, creds))
    if as_json:
        print(json.dumps(_status_json(snap, failures, dead), sort_keys=True))
        return
    table = Table(title="queue", show_lines=False)
    for column in ("group", "waiting", "running", "retries", "abandons"):
        table.add_column(column, justify="left" if column == "group" else "right", overflow="fold")
    for g in snap.groups:
        table.add_row(Text(g.group_folder), str(g.waiting), str(g.running), str(g.retries), str(g.abandons))
    table.add_row("[bold]total[/bold]", str(snap.depth), str(snap.running), str(snap.retries), str(snap.abandons))
    out.print(table)
    out.print(f"wait, turn request → run start: {_times(snap.wait.count, snap.wait.mean_s())}")
    out.print(f"run duration: {_times(snap.duration.count, snap.duration.mean_s())}")
    out.print(f"failures: {failures.get('failed', 0)} failed, {failures.get('timed_out', 0)} timed out, "
              f"{failures.get('abandoned', 0)} abandoned (`nanoclaw failures`)")
    out.print(f"dead letters: {dead} open (`nanoclaw dlq list`)")


def failures(limit: int = typer.Option(20, help="how many, newest first"),
             abandoned: bool = typer.Option(False, "--abandoned", help="only runs the queue gave up on"),
             as_json: bool = JsonOption, config: Path | None = ConfigOption,
             credentials: Path | None = CredentialsOption) -> None:
    """Failed, timed-out and abandoned agent runs, newest first (RunAbandoned, AgentRunFinished)."""
    settings, creds = load(config, credentials)
    rows = run(_failures(settings, creds, limit, abandoned))
    if as_json:
        for row in rows:
            print(json.dumps(row, sort_keys=True, ensure_ascii=False))
        return
    if not rows:
        out.print("no failed runs")
        return
    table = Table()
    for column in ("at", "what", "group", "chat", "run", "attempts", "detail"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(Text(r["at"]), r["what"], Text(r["group_folder"]), Text(r["chat_jid"]), Text(r["run_id"]),
                      "" if r["attempts"] is None else str(r["attempts"]), Text(r["detail"]))
    out.print(table)


def _times(count: int, mean_s: float | None) -> str:
    return "none yet" if not count else f"{count} measured, mean {mean_s:.2f} s"


def _status_json(snap: QueueSnapshot, failures: dict[str, int], dead: int) -> dict:
    return {
        "queue": {"depth": snap.depth, "running": snap.running, "retries": snap.retries, "abandons": snap.abandons,
                  "groups": [vars(g) for g in snap.groups]},
        "wait_s": {"count": snap.wait.count, "sum": snap.wait.sum_s, "mean": snap.wait.mean_s()},
        "run_duration_s": {"count": snap.duration.count, "sum": snap.duration.sum_s, "mean": snap.duration.mean_s()},
        "failures": failures,
        "dead_letters_open": dead,
    }


async def _status(settings, creds) -> tuple[QueueSnapshot, dict[str, int], int]:
    async with bus(settings, creds, name="nanoclaw-status", start_embedded=True) as (nc, store):
        async with rebuilt(store, [QueueStats(), RunFailures()]) as rm:
            snap, counts = snapshot(rm.db), failure_counts(rm.db)
        dead = len(await open_dead_letters(nc, store))
    return snap, counts, dead


async def _failures(settings, creds, limit: int, abandoned: bool) -> list[dict]:
    async with bus(settings, creds, name="nanoclaw-failures", start_embedded=True) as (_nc, store):
        async with rebuilt(store, [RunFailures()]) as rm:
            return recent_failures(rm.db, limit=limit, abandoned_only=abandoned)
