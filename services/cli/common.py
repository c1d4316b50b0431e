"""Helpers shared by CLI commands: configuration loading with readable failures, running coroutines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Coroutine, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from services.cli.config_sections import section_problems
from services.harness.config import ConfigError, Credentials, Settings, load_credentials, load_settings, settings_path
from services.harness.connect import NatsUnavailable
from services.harness.logging import get_logger, setup_logging
from services.harness.natsserver import NatsServerError

# No emoji codes anywhere: ids such as `http:a:b::c@d.e-f` hold `:a:`-like text (issue 16); tables go further
# and show every cell literally (services/cli/output.py).
console = Console(stderr=True, emoji=False)
out = Console(emoji=False)
T = TypeVar("T")

ConfigOption = typer.Option(None, "--config", "-c", help="config.yml (default: $NANOCLAW_CONFIG or ./config.yml)")
CredentialsOption = typer.Option(None, "--credentials", help="credentials.yml (default: $NANOCLAW_CREDENTIALS or ./credentials.yml)")


def load(config: Path | None, credentials: Path | None = None, *, log_to_file: bool = False) -> tuple[Settings, Credentials]:
    """Load settings and credentials and validate every service section, or exit 2 naming each problem on one
    line (``configuration error: config.yml: queue.max_concurent: unknown key``); never a traceback."""
    try:
        settings = load_settings(config)
        creds = load_credentials(credentials)
    except ConfigError as exc:
        config_failure(str(exc).splitlines())
    where = str(settings_path(config) or "environment")
    problems = section_problems(settings, creds, where)
    if problems:
        config_failure(problems)
    setup_log(settings, to_file=log_to_file)
    return settings, creds


def config_failure(lines: list[str]) -> NoReturn:
    """Print each problem as ``configuration error: <line>`` (no markup: keys and values are shown as they are)
    and exit 2."""
    for line in lines:
        console.print(f"configuration error: {line}", markup=False, highlight=False, emoji=False, soft_wrap=True)
    raise typer.Exit(2)


def status(message: str, **fields: object) -> None:
    """A progress line of a long-running command (``up``): on a terminal a plain line; otherwise a JSON log line
    (``event``: ``message``), so a redirected console holds JSON lines only, as the README says."""
    if console.is_terminal:
        console.print(message, markup=False, emoji=False, highlight=False, soft_wrap=True)
    else:
        get_logger("nanoclaw.cli").info(message, **fields)


def setup_log(settings: Settings, *, to_file: bool) -> None:
    """``to_file``: JSON lines on the console and in ``<data_dir>/logs`` (long-running commands); else quiet."""
    setup_logging(settings.log.level, Path(settings.data_dir) / "logs" if to_file else None,
                  max_bytes=settings.log.file_max_bytes, backups=settings.log.file_backups, console=to_file)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn infrastructure failures into one clear line and exit 1."""
    try:
        return asyncio.run(coro)
    except (NatsUnavailable, NatsServerError) as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    except ConfigError as exc:  # a service's own start-up check (e.g. a secret it needs is not set)
        config_failure(str(exc).splitlines())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def progress_line(text: str, width: int = 200) -> str:
    """One line of build output as plain rich text (log lines may contain ``[``)."""
    text = " ".join(text.split())
    return (text[: width - 1] + "…" if len(text) > width else text).replace("[", r"\[")
