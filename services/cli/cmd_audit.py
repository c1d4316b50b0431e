"""``nanoclaw audit rebuild|verify``: replay the log into read models and check live ones."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from projections.audit import AuditError, rebuild as do_rebuild, verify as do_verify
from projections.catalog import all_projections
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
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
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    out.print(f"rebuilt {db}: {applied} event applications")


@app.command()
def verify(db: Path | None = typer.Option(None, "--db", help="live database (default: the projections service's)"),
           config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Rebuild into a temporary database and compare it with the live read models, table by table."""
    settings, creds = load(config, credentials)
    live = db or read_model_path(settings.data_dir)

    async def go():
        async with bus(settings, creds, name="nanoclaw-audit") as (_nc, store):
            with _progress() as bar:
                task = bar.add_task("verifying", total=await store.last_seq())
                return await do_verify(store, live, all_projections(), progress=lambda _n, seq: bar.update(task, completed=seq))

    try:
        checks = run(go())
    except AuditError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    table = Table("table", "live rows", "rebuilt rows", "checksum", "result")
    for c in checks:
        table.add_row(c.table, str(c.live_rows), str(c.rebuilt_rows), c.live_checksum[:12],
                      "[green]same[/green]" if c.ok else f"[red]differs[/red] (rebuilt {c.rebuilt_checksum[:12]})")
    out.print(table)
    bad = [c.table for c in checks if not c.ok]
    if bad:
        out.print(f"[red]audit verify: {len(bad)} table(s) differ from the log: {', '.join(bad)}[/red]")
        raise typer.Exit(1)
    out.print(f"audit verify: clean ({len(checks)} tables match the log)")
