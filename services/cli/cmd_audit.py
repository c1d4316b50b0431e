"""``nanoclaw audit rebuild|verify``: replay the log into read models and check live ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from events.chain import ChainVerifier
from projections.audit import AuditError, VerifyReport, rebuild as do_rebuild, verify_report
from projections.catalog import all_projections
from projections.sqlite import SkippedMessage, skipped_messages
from services.cli import cmd_audit_chain, cmd_audit_log
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.cli import output
from services.projector.service import read_model_path

app = typer.Typer(help="Replay the event log for audits.", no_args_is_help=True)
app.command()(cmd_audit_log.show)
app.command()(cmd_audit_log.export)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
                    TimeElapsedColumn(), console=console, transient=True)


@app.command()
def rebuild(db: Path | None = typer.Option(None, "--db", help="path of the fresh database to write"),
            as_of: str | None = typer.Option(None, "--as-of", help="as the read models were at this time (ISO 8601)"),
            until_seq: int | None = typer.Option(None, "--until-seq", help="as they were after this stream sequence"),
            out_dir: Path | None = typer.Option(None, "--out", help="directory for an --as-of/--until-seq rebuild"),
            force: bool = typer.Option(False, help="replace an existing file"),
            config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Replay the whole log into a fresh read-model database (--db PATH), or every projection as it was at a
    past moment (--as-of TIME or --until-seq N) into --out DIR (never over the live read models)."""
    settings, creds = load(config, credentials)
    if as_of is not None or until_seq is not None or out_dir is not None:
        if (as_of is None) == (until_seq is None) or out_dir is None or db is not None:
            console.print("[red]error[/red]: a past moment takes exactly one of --as-of TIME or --until-seq N, "
                          "and --out DIR (not --db)")
            raise typer.Exit(2)
        return cmd_audit_log.rebuild_as_of_command(settings, creds, out_dir, as_of=as_of, until_seq=until_seq,
                                                   force=force)
    if db is None:
        console.print("[red]error[/red]: give --db PATH (the whole log), or --as-of/--until-seq with --out DIR")
        raise typer.Exit(2)

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
           log_only: bool = typer.Option(False, "--log-only", help="check the log's hash chain only"),
           checkpoint: Path | None = typer.Option(None, "--checkpoint",
                                                  help="compare with the digests recorded in this file"),
           record: Path | None = typer.Option(None, "--record-checkpoint",
                                              help="append this run's digest to this file when all is clean"),
           config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Check the log's hash chain (naming the first message altered, missing or out of order; with --checkpoint,
    also that the log up to each recorded digest is unchanged), then rebuild into a temporary database and
    compare it with the live read models, table by table; list the messages of the log that were skipped. Exit 1
    if the chain is broken, a table differs or a skipped message has no MessageDeadLettered record; skipped
    messages that are recorded are reported and pass (they stay in the immutable log forever)."""
    settings, creds = load(config, credentials)
    live = db or read_model_path(settings.data_dir)
    try:
        checkpoints = cmd_audit_chain.read_checkpoints(checkpoint) if checkpoint else []
    except (OSError, ValueError) as exc:
        console.print(f"[red]error[/red]: --checkpoint: {exc}")
        raise typer.Exit(2) from None

    async def go() -> tuple[ChainVerifier, VerifyReport | AuditError | None]:
        async with bus(settings, creds, name="nanoclaw-audit") as (_nc, store):
            chain = await cmd_audit_chain.check_chain(store, checkpoints, await store.last_seq())
            if log_only:
                return chain, None
            with _progress() as bar:
                task = bar.add_task("verifying", total=await store.last_seq())
                try:
                    return chain, await verify_report(store, live, all_projections(),
                                                      progress=lambda _n, seq: bar.update(task, completed=seq))
                except AuditError as exc:  # the chain's result is still worth printing
                    return chain, exc

    chain, report = run(go())
    chain_ok = cmd_audit_chain.report(chain, checkpoints)
    if isinstance(report, AuditError):
        console.print(f"[red]error[/red]: {escape(str(report))} (--log-only checks the log alone)")
        raise typer.Exit(2)
    if report is None:
        _after_chain(chain, chain_ok, record)
        return
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
    if chain_ok:
        out.print(f"audit verify: clean ({len(report.tables)} tables match the log"
                  + ("; every skipped message is recorded as dead-lettered)" if report.skipped else ")"))
    _after_chain(chain, chain_ok, record)


def _after_chain(chain: ChainVerifier, ok: bool, record: Path | None) -> None:
    """Exit 1 on a broken chain; else record the checkpoint when asked."""
    if not ok:
        raise typer.Exit(1)
    if record is not None:
        cmd_audit_chain.record_checkpoint(record, chain.checkpoint)
        out.print(f"checkpoint seq {chain.checkpoint.seq} recorded in {record} (keep a copy off this machine)",
                  markup=False, highlight=False)
