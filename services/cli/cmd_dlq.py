"""``nanoclaw dlq list|show|retry|drop``: the dead letters — messages a service gave up on — with who (the
service), why (the error), when, the subject and event type. A dead letter is ``<service>:<stream seq>:<attempt>``
(docs/events.md, "Dead letters"). ``retry`` asks the owning service to handle the original message again
(services/harness/redrive.py) and waits for the outcome; ``drop`` records that the operator gave up on it.
Nothing is ever deleted: the log and ``NC_DLQ`` keep every message.

Exit codes: 0 done; 1 not found, not in a state that allows it, failed again, or the bus is down; 2 a bad id;
3 ``retry`` got no outcome within ``--timeout`` (is the service running?).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.markup import escape

from services.cli import output
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.cli.deadletters import drop as record_drop, kept_copy, outcome, request_retry, safe_text
from services.harness.dlq_ledger import OPEN_STATES, BadDeadLetterId, DeadLetter, Ledger, event_type_of, parse_id, read_ledger

app = typer.Typer(help="Dead letters: list, inspect, retry or drop messages a service gave up on.", no_args_is_help=True)
JsonOption = typer.Option(False, "--json", help="one JSON object per line (NDJSON)")
IdArgument = typer.Argument(..., help="<service>:<stream seq>[:<attempt>] (as `dlq list` shows; no attempt: the newest)")


class _Refused(Exception):
    """The command cannot do this (the message says why): exit 1."""


@app.command(name="list")
def list_(all_: bool = typer.Option(False, "--all", help="also retried, dropped and superseded ones"),
          service: str | None = typer.Option(None, "--service", help="only this service's"),
          as_json: bool = JsonOption, config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Dead letters still open (or being retried), oldest first."""
    settings, creds = load(config, credentials)
    letters = run(_list(settings, creds, service))
    shown = [d for d in letters if all_ or d.state in OPEN_STATES]
    if as_json:
        output.print_ndjson({k: v for k, v in d.as_dict().items() if k != "history"} for d in shown)
        return
    if not shown:
        out.print("no dead letters" if all_ or not letters else f"no open dead letters ({len(letters)} resolved: --all)")
        return
    table = output.table("id", "state", "when", "service", "event type", "subject", "error")
    for d in shown:
        output.add_row(table, d.id, d.state, d.at, d.service, event_type_of(d.subject), d.subject, d.error)
    output.print_table(out, table)


@app.command()
def show(dead_letter: str = IdArgument,
         max_bytes: int = typer.Option(65536, help="show at most this many bytes of the body"),
         as_json: bool = JsonOption, config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """One dead letter: who, why, when, its history, and the message body (escaped: it cannot drive the terminal)."""
    key = _parse(dead_letter)
    settings, creds = load(config, credentials)
    letter, kept = run(_show(settings, creds, key))
    body, headers = kept if kept else (b"", {})
    text, truncated = safe_text(body, max_bytes)
    if as_json:
        print(json.dumps({**letter.as_dict(), "headers": headers, "body": text, "body_truncated": truncated,
                          "body_bytes": len(body), "kept": kept is not None}, ensure_ascii=False, sort_keys=True))
        return
    for label, value in (("id", letter.id), ("state", letter.state), ("service", letter.service),
                         ("when", letter.at), ("subject", letter.subject), ("event type", event_type_of(letter.subject)),
                         ("stream seq", letter.stream_seq), ("deliveries", letter.deliveries), ("error", letter.error),
                         ("kept in NC_DLQ", letter.dead_letter_seq)):
        out.print(f"[bold]{label}:[/bold] {escape(str(value))}", soft_wrap=True, highlight=False, emoji=False)
    for event_type, at, by in letter.history:
        out.print(f"  {escape(at)} {event_type}{escape(f' by {by}') if by else ''}", highlight=False, emoji=False)
    if kept is None:
        out.print("[yellow]no copy in NC_DLQ[/yellow]")
        return
    out.print(f"[bold]body[/bold] ({len(body)} bytes{', truncated' if truncated else ''}):")
    out.print(text, markup=False, highlight=False, soft_wrap=True, emoji=False)


@app.command()
def retry(dead_letter: str = IdArgument,
          timeout: float = typer.Option(30.0, help="seconds to wait for the service's outcome (0: do not wait)"),
          config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Ask the owning service to handle the original message again; wait for the outcome."""
    key = _parse(dead_letter)
    settings, creds = load(config, credentials)
    try:
        letter, result = run(_retry(settings, creds, key, timeout))
    except _Refused as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    if timeout <= 0:
        console.print(f"retry of {letter.id} requested")
    elif result is None:
        console.print(f"[yellow]no outcome within {timeout:g} s[/yellow]: the retry of {escape(letter.id)} is recorded; "
                      f"{escape(letter.service)} handles it when it runs (`nanoclaw dlq show {escape(letter.id)}`)")
        raise typer.Exit(3)
    elif result.state == "retried":
        console.print(f"{escape(letter.id)} handled by {escape(letter.service)}")
    else:
        console.print(f"[red]failed again[/red]: now {escape(letter.service)}:{letter.stream_seq}:{letter.attempt + 1} "
                      f"(`nanoclaw dlq show {escape(letter.service)}:{letter.stream_seq}`)")
        raise typer.Exit(1)


@app.command(name="drop")
def drop_(dead_letter: str = IdArgument, reason: str | None = typer.Option(None, help="why (kept in the event)"),
          config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Give up on a dead letter: it is no longer listed as open (the message itself is kept)."""
    key = _parse(dead_letter)
    settings, creds = load(config, credentials)
    try:
        letter = run(_drop(settings, creds, key, reason))
    except _Refused as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(f"dropped {escape(letter.id)}")


def _parse(text: str) -> tuple[str, int, int | None]:
    try:
        return parse_id(text)
    except BadDeadLetterId as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None


def _find(ledger: Ledger, key: tuple[str, int, int | None], *, open_only: bool) -> DeadLetter:
    letter = ledger.find(*key)
    name = ":".join(str(k) for k in key if k is not None)
    if letter is None:
        raise _Refused(f"no dead letter {name} (see `nanoclaw dlq list --all`)")
    if open_only and letter.state != "open":
        newest = ledger.find(key[0], key[1], None)
        hint = f"; the newest attempt is {newest.id} ({newest.state})" if newest and newest is not letter else ""
        raise _Refused(f"dead letter {letter.id} is {letter.state}, not open{hint}")
    return letter


async def _list(settings, creds, service: str | None) -> list[DeadLetter]:
    async with bus(settings, creds, name="nanoclaw-dlq", start_embedded=True) as (_nc, store):
        return list((await read_ledger(store, service)).letters.values())


async def _show(settings, creds, key):
    async with bus(settings, creds, name="nanoclaw-dlq", start_embedded=True) as (nc, store):
        try:
            letter = _find(await read_ledger(store, key[0]), key, open_only=False)
        except _Refused as exc:
            console.print(f"[red]error[/red]: {escape(str(exc))}")
            raise typer.Exit(1) from None
        return letter, await kept_copy(nc, letter)


async def _retry(settings, creds, key, timeout: float) -> tuple[DeadLetter, DeadLetter | None]:
    # Not a temporary embedded server: a retry needs the owning service running, i.e. a running bus.
    async with bus(settings, creds, name="nanoclaw-dlq", start_embedded=False) as (_nc, store):
        ledger = await read_ledger(store, key[0])
        letter = _find(ledger, key, open_only=True)
        await request_retry(store, letter)
        if timeout <= 0:
            return letter, None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            result = await outcome(store, letter, ledger)
            if result is not None:
                return letter, result
            await asyncio.sleep(0.1)
        return letter, None


async def _drop(settings, creds, key, reason: str | None) -> DeadLetter:
    async with bus(settings, creds, name="nanoclaw-dlq", start_embedded=True) as (_nc, store):
        letter = _find(await read_ledger(store, key[0]), key, open_only=True)
        await record_drop(store, letter, reason)
        return letter
