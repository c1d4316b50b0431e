"""``nanoclaw events tail``: live events, readable."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.text import Text

from events.envelope import decode_events
from events.errors import InvalidEvent
from services.cli import output
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, load, out, run

app = typer.Typer(help="Look at the event log.", no_args_is_help=True)


@app.command()
def tail(subject_filter: str = typer.Argument("nc.evt.>", help="subject filter, e.g. 'nc.evt.chat.>'"),
         since: int = typer.Option(-1, help="start after this stream sequence (default: only new events)"),
         as_json: bool = typer.Option(False, "--json", help="NDJSON: each CloudEvent as one compact JSON object per line"),
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
                if as_json:  # still one object per line: a consumer sees the gap and why
                    output.print_ndjson([{"seq": raw.seq, "subject": raw.subject, "unreadable": str(exc)}])
                else:
                    out.print(Text(f"#{raw.seq} {raw.subject}: unreadable ({exc})", style="red"), soft_wrap=True)
                continue
            for e in events:
                if as_json:
                    output.print_ndjson([e.model_dump(mode="json", exclude_none=True)])
                else:
                    out.print(_readable(raw.seq, e), soft_wrap=True)
            seen += 1
            if limit and seen >= limit:
                return


def _readable(seq: int, e) -> Text:
    """One event on one line; every value from the log is shown literally (no markup or emoji codes)."""
    data = json.dumps(e.data, ensure_ascii=False)
    data = data if len(data) <= 160 else data[:157] + "..."
    return Text.assemble((f"#{seq}", "dim"), f" {e.time:%H:%M:%S} ", (e.eventtype, "bold"),
                         f" {e.aggregatecontext}.{e.aggregatetype}/{e.aggregateid} v{e.aggregateversion} ",
                         (f"corr={(e.correlationid or '')[:8]}", "dim"), f" {data}")
