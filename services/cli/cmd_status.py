"""``nanoclaw status`` (the queue: depth per group and in total, waits, run durations, retries, abandons, plus
failures and open dead letters) and ``nanoclaw failures`` (failed and abandoned runs, newest first). Both read
the log itself (the read models rebuilt in memory, services/cli/rebuilt.py), so they are right whether or not
the projections service runs; ``/metrics`` shows the same numbers (services/projector/queue_metrics.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from projections.queue_stats import QueueSnapshot, QueueStats, snapshot
from projections.run_failures import RunFailures, failure_counts, recent_failures
from services.cli import output
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
        output.print_ndjson([_status_json(snap, failures, dead)])
        return
    table = output.table("group", "waiting", "running", "retries", "abandons", title="queue")
    for g in snap.groups:
        output.add_row(table, g.group_folder, g.waiting, g.running, g.retries, g.abandons)
    output.add_row(table, output.styled("[bold]total[/bold]"), snap.depth, snap.running, snap.retries, snap.abandons)
    output.print_table(out, table)
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
        output.print_ndjson(rows)
        return
    if not rows:
        out.print("no failed runs")
        return
    table = output.table("at", "what", "group", "chat", "run", "attempts", "detail")
    for r in rows:
        output.add_row(table, r["at"], r["what"], r["group_folder"], r["chat_jid"], r["run_id"], r["attempts"], r["detail"])
    output.print_table(out, table)


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
