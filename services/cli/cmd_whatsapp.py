"""``nanoclaw whatsapp pair``: link this installation to a WhatsApp account (once; the session is reused)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from services.cli.common import ConfigOption, console, load
from services.gateway.config import GatewayConfig
from services.gateway.whatsapp.pairing import PairingError, normalize_phone_number, pair as do_pair

app = typer.Typer(help="WhatsApp channel.", no_args_is_help=True)


@app.command()
def pair(phone: str | None = typer.Option(None, help="phone number with country code: print a pairing code instead of a QR"),
         config: Path | None = ConfigOption) -> None:
    """Show a QR code (or a pairing code with --phone) to link WhatsApp; the session is stored under the data dir."""
    settings, _ = load(config)
    gw = GatewayConfig.model_validate(settings.channels)
    db = gw.whatsapp.session_db or Path(settings.data_dir) / "whatsapp" / "session.sqlite3"
    try:
        number = normalize_phone_number(phone) if phone else None
        jid = asyncio.run(do_pair(db, phone=number, out=sys.stdout))
    except (PairingError, ValueError) as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    console.print(f"paired as {jid}; session stored in {db}. Enable the channel with channels.whatsapp.enabled: true")
