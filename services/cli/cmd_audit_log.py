"""``nanoclaw audit rebuild --as-of|--until-seq``, ``audit show`` and ``audit export``: the log as it was, one
aggregate's history, and the log (or part of it) as a file an auditor keeps. Registered on the ``audit`` group
by services/cli/cmd_audit.py."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from events.subjects import EVENT_PREFIX, check_name, encode_token
from projections.asof import AsOfError, AsOfResult, parse_time, rebuild_as_of, seq_at
from projections.audit import AuditError
from projections.catalog import all_projections
from services.cli.auditlog import (Bound, event_line, js_stored_at, seq_range, timeline_entries, timeline_lines,
                                   utc_text, writer_for)
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.harness.config import Credentials, Settings
from services.projector.service import read_model_path


def _bar(what: str) -> Progress:
    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn("messages"),
                    TimeElapsedColumn(), console=console, transient=True)


def rebuild_as_of_command(settings: Settings, creds: Credentials, out_dir: Path, *, as_of: str | None,
                          until_seq: int | None, force: bool) -> None:
    """``audit rebuild --as-of TIME | --until-seq N --out DIR``: every projection as it was then, in
    ``DIR/readmodels.db``. Exit 2 on a bad time, an existing target or a target that is the live database."""
    when: datetime | None = None
    if as_of is not None:
        try:
            when = parse_time(as_of)
        except ValueError as exc:
            console.print(f"[red]error[/red]: --as-of: {exc}")
            raise typer.Exit(2) from None

    async def go() -> AsOfResult:
        async with bus(settings, creds, name="nanoclaw-audit") as (nc, store):
            last = await store.last_seq()
            upto = await seq_at(when, last, js_stored_at(nc)) if when is not None else until_seq or 0
            with _bar("rebuilding") as bar:
                task = bar.add_task("rebuilding", total=max(min(upto, last), 0))
                return await rebuild_as_of(store, out_dir, all_projections(), until_seq=upto,
                                           live_db=read_model_path(settings.data_dir), force=force,
                                           progress=lambda _n, seq: bar.update(task, completed=min(seq, upto)))

    try:
        result = run(go())
    except AuditError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    point = f"as of {utc_text(when)}" if when is not None else f"until seq {until_seq}"
    out.print(f"rebuilt {result.db} {point}: stream seq 1..{result.seq}, {result.applied} event applications",
              markup=False, highlight=False)


def show(aggregate_id: str = typer.Argument(..., help="the raw aggregate id, e.g. a chat JID or a run id"),
         aggregate_type: str | None = typer.Option(None, "--type",
                                                   help="only this aggregate, as CONTEXT.TYPE (e.g. router.group)"),
         as_json: bool = typer.Option(False, "--json", help="one JSON object per event per line (NDJSON)"),
         config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Print every event of the aggregates with this id, oldest first, as a readable timeline (every string
    escaped) or as NDJSON. An id used by several aggregate types (a chat JID: its group, conversation, chat)
    shows all of them, each event labelled; --type narrows to one."""
    settings, creds = load(config, credentials)
    context, kind = "*", "*"
    if aggregate_type is not None:
        try:
            context, kind = aggregate_type.split(".")
            check_name("context", context)
            check_name("aggregate type", kind)
        except ValueError as exc:
            console.print(f"[red]error[/red]: --type must be CONTEXT.TYPE such as router.group ({exc})")
            raise typer.Exit(2) from None
    if not aggregate_id:
        console.print("[red]error[/red]: the aggregate id must not be empty")
        raise typer.Exit(2)
    subject = f"{EVENT_PREFIX}.{context}.{kind}.{encode_token(aggregate_id)}.*"

    async def go() -> int:
        shown = 0
        async with bus(settings, creds, name="nanoclaw-audit") as (_nc, store):
            async for raw in store.read_raw(subject_filter=subject):
                for raw_, event, problem in timeline_entries(raw):
                    if as_json:
                        sys.stdout.write(event_line(raw_, event, problem) + "\n")
                    else:
                        for line in timeline_lines(raw_, event, problem):
                            out.print(line, markup=False, highlight=False, soft_wrap=True)
                    shown += 1
        sys.stdout.flush()
        return shown

    if run(go()) == 0:
        console.print(f"no events for aggregate id {aggregate_id!r}"
                      + (f" of type {aggregate_type}" if aggregate_type else ""))
        raise typer.Exit(1)


def export(target: Path = typer.Argument(..., help="file to write (replaced only with --force)"),
           fmt: str = typer.Option("jsonl", "--format", help="jsonl or sqlite"),
           subject: str = typer.Option(f"{EVENT_PREFIX}.>", "--subject", help="subject filter, e.g. 'nc.evt.chat.>'"),
           start: str | None = typer.Option(None, "--from", help="first stream sequence, or a time (ISO 8601)"),
           end: str | None = typer.Option(None, "--to", help="last stream sequence, or a time (ISO 8601)"),
           force: bool = typer.Option(False, help="replace an existing file"),
           config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Write the log's messages (all, or those matching --subject between --from and --to, both included) to a
    file: JSON lines (one stream message per line, with its events, or why it is not a valid commit and its
    bytes) or an SQLite database (tables messages and events). Written beside the target and renamed when
    complete."""
    settings, creds = load(config, credentials)
    try:
        bounds = Bound.parse(start), Bound.parse(end)
        writer = writer_for(fmt, target, force=force)
    except (ValueError, FileExistsError) as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None

    async def go() -> tuple[int, int, int]:
        written = 0
        async with bus(settings, creds, name="nanoclaw-audit") as (nc, store):
            first, last = await seq_range(*bounds, await store.last_seq(), js_stored_at(nc))
            if first > last:
                return 0, first, last
            with _bar("exporting") as bar:
                task = bar.add_task("exporting", total=last - first + 1)
                stream = store.read_raw(after_seq=first - 1, subject_filter=subject)
                try:
                    async for raw in stream:
                        if raw.seq > last:
                            break
                        writer.write(raw)
                        written += 1
                        # Filtered, the total is what matched: what is written plus what the server still has
                        # pending, bounded by the range.
                        bar.update(task, completed=written, total=written + min(raw.num_pending, last - raw.seq))
                finally:
                    await stream.aclose()
        return written, first, last

    try:
        written, first, last = run(go())
    except AuditError as exc:
        writer.abort()
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    out.print(f"exported {written} message(s) of seq {first}..{last} matching {subject} to {target} ({fmt})",
              markup=False, highlight=False)
