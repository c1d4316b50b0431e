"""``nanoclaw audit rebuild|verify``: replay the log into read models and check live ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from projections.audit import AuditError, VerifyReport, rebuild as do_rebuild, verify_report
from projections.catalog import all_projections
from projections.sqlite import SkippedMessage, skipped_messages
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.cli import output
from services.projector.service import read_model_path

app = typer.Typer(help="Replay the event log for audits.", no_args_is_help=True)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
                    TimeElapsedColumn(), console=console, transient=True)


@app.command()
def rebuild(db: Path = typer.Option(..., "--db", help="path of the fresh database to write"),
            force: bool = typer.Option(False, help="replace an existing file"),
            config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Replay the whole log into a fresh read-model database."""
    settings, creds = load(config, credentials)

    async def go() -> int:
        async with bus(settings, creds, name="nanoclaw-audit") as (_nc, store):
            total = await store.last_seq()
            with _progress() as bar:
                task = bar.add_task("rebuilding", total=total)
                return await do_rebuild(store, db, all_projections(), force=force,
                                        progress=lambda _n, seq: bar.update(task, completed=seq))

    try:
        applied = run(go())
    except AuditError as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    out.print(f"rebuilt {db}: {applied} event applications")
    rebuilt = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        skipped = skipped_messages(rebuilt)
    finally:
        rebuilt.close()
    if skipped:
        output.print_table(out, _skipped_table(skipped))
        out.print(f"[yellow]{len(skipped)} message(s) of the log skipped: not valid commits, or a projection "
                  "failed on them (docs/events.md, \"Bad messages in the log\")[/yellow]")


def _skipped_table(skipped: list[SkippedMessage], recorded_by: dict[int, set[str]] | None = None) -> output.Table:
    table = output.table("seq", "subject", "reason", *(("dead-lettered by",) if recorded_by is not None else ()))
    for m in skipped:
        who = () if recorded_by is None else (", ".join(sorted(recorded_by.get(m.seq, ()))) or output.styled("[red]nobody[/red]"),)
        output.add_row(table, str(m.seq), m.subject, "; ".join(m.reasons), *who)
    return table


@app.command()
def verify(db: Path | None = typer.Option(None, "--db", help="live database (default: the projections service's)"),
           config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Rebuild into a temporary database and compare it with the live read models, table by table; list the
    messages of the log that were skipped. Exit 1 if a table differs or a skipped message has no
    MessageDeadLettered record; skipped messages that are recorded are reported and pass (they stay in the
    immutable log forever)."""
    settings, creds = load(config, credentials)
    live = db or read_model_path(settings.data_dir)

    async def go() -> VerifyReport:
        async with bus(settings, creds, name="nanoclaw-audit") as (_nc, store):
            with _progress() as bar:
                task = bar.add_task("verifying", total=await store.last_seq())
                return await verify_report(store, live, all_projections(),
                                           progress=lambda _n, seq: bar.update(task, completed=seq))

    try:
        report = run(go())
    except AuditError as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    table = output.table("table", "live rows", "rebuilt rows", "checksum", "result")
    for c in report.tables:
        output.add_row(table, c.table, str(c.live_rows), str(c.rebuilt_rows), c.live_checksum[:12],
                      output.styled("[green]same[/green]") if c.ok
                      else output.styled(f"[red]differs[/red] (rebuilt {c.rebuilt_checksum[:12]})"))
    output.print_table(out, table)
    if report.skipped:
        output.print_table(out, _skipped_table(report.skipped, report.recorded_by))
        out.print(f"audit verify: {len(report.skipped)} message(s) of the log skipped (not valid commits, or a "
                  f"projection failed on them): seq {', '.join(str(m.seq) for m in report.skipped)}")
    bad = [c.table for c in report.tables if not c.ok]
    if bad:
        out.print(f"[red]audit verify: {len(bad)} table(s) differ from the log: {', '.join(bad)}[/red]")
    if report.unrecorded:
        out.print(f"[red]audit verify: {len(report.unrecorded)} skipped message(s) have no MessageDeadLettered "
                  f"record (seq {', '.join(str(m.seq) for m in report.unrecorded)}); the projections service "
                  "records them: is it running?[/red]")
    if not report.ok:
        raise typer.Exit(1)
    out.print(f"audit verify: clean ({len(report.tables)} tables match the log"
              + ("; every skipped message is recorded as dead-lettered)" if report.skipped else ")"))
