"""Helpers shared by CLI commands: configuration loading with readable failures, running coroutines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Coroutine, TypeVar

import typer
from rich.console import Console

from services.harness.config import ConfigError, Credentials, Settings, load_credentials, load_settings
from services.harness.connect import NatsUnavailable
from services.harness.logging import setup_logging
from services.harness.natsserver import NatsServerError

console = Console(stderr=True)
out = Console()
T = TypeVar("T")

ConfigOption = typer.Option(None, "--config", "-c", help="config.yml (default: $NANOCLAW_CONFIG or ./config.yml)")
CredentialsOption = typer.Option(None, "--credentials", help="credentials.yml (default: $NANOCLAW_CREDENTIALS or ./credentials.yml)")


def load(config: Path | None, credentials: Path | None = None, *, log_to_file: bool = False) -> tuple[Settings, Credentials]:
    """Load settings and credentials, or exit 2 with the problem named."""
    try:
        settings = load_settings(config)
        creds = load_credentials(credentials)
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]: {exc}")
        raise typer.Exit(2) from None
    setup_log(settings, to_file=log_to_file)
    return settings, creds


def setup_log(settings: Settings, *, to_file: bool) -> None:
    """``to_file``: JSON lines on the console and in ``<data_dir>/logs`` (long-running commands); else quiet."""
    setup_logging(settings.log.level, Path(settings.data_dir) / "logs" if to_file else None,
                  max_bytes=settings.log.file_max_bytes, backups=settings.log.file_backups, console=to_file)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn infrastructure failures into one clear line and exit 1."""
    try:
        return asyncio.run(coro)
    except (NatsUnavailable, NatsServerError) as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def progress_line(text: str, width: int = 200) -> str:
    """One line of build output as plain rich text (log lines may contain ``[``)."""
    text = " ".join(text.split())
    return (text[: width - 1] + "…" if len(text) > width else text).replace("[", r"\[")
