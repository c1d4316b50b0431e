"""``nanoclaw events tail``: live events, readable."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from events.envelope import decode_events
from events.errors import InvalidEvent
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, load, out, run

app = typer.Typer(help="Look at the event log.", no_args_is_help=True)


@app.command()
def tail(subject_filter: str = typer.Argument("nc.evt.>", help="subject filter, e.g. 'nc.evt.chat.>'"),
         since: int = typer.Option(-1, help="start after this stream sequence (default: only new events)"),
         as_json: bool = typer.Option(False, "--json", help="print the raw CloudEvents, one per line"),
         limit: int = typer.Option(0, help="stop after this many commits (0: follow until Ctrl+C)"),
         config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Print events as they are appended (or from --since SEQ)."""
    settings, creds = load(config, credentials)
    run(_tail(settings, creds, subject_filter, since, as_json, limit))


async def _tail(settings, creds, subject_filter, since, as_json, limit) -> None:
    async with bus(settings, creds, name="nanoclaw-events-tail", start_embedded=False) as (_nc, store):
        start = since if since >= 0 else await store.last_seq()
        seen = 0
        async for raw in store.read_raw(after_seq=start, subject_filter=subject_filter, follow=True):
            try:
                events = decode_events(raw.data)
            except InvalidEvent as exc:
                out.print(f"[red]#{raw.seq} {raw.subject}: unreadable ({exc})[/red]")
                continue
            for e in events:
                if as_json:
                    out.print_json(json.dumps(e.model_dump(mode="json", exclude_none=True)))
                else:
                    data = json.dumps(e.data, ensure_ascii=False)
                    data = data if len(data) <= 160 else data[:157] + "..."
                    out.print(f"[dim]#{raw.seq}[/dim] {e.time:%H:%M:%S} [bold]{e.eventtype}[/bold] "
                              f"{e.aggregatecontext}.{e.aggregatetype}/{e.aggregateid} v{e.aggregateversion} "
                              f"[dim]corr={(e.correlationid or '')[:8]}[/dim] {data}", markup=True, highlight=False)
            seen += 1
            if limit and seen >= limit:
                return
