"""Structured logging: to the console and to a rotating file ``<data_dir>/logs/nanoclaw.log`` (JSON lines).

The console (stderr) gets JSON lines too when it is not a terminal (redirected, piped, a service manager's
journal), so every line there parses; on a terminal it gets structlog's readable, coloured rendering of the same
events. README.md ("Set-up") states this.

Every line carries ``service``, and while a message is handled also ``event_type`` and ``correlation_id``
(bound with :func:`bind_event`), so one chat turn can be followed across services with
``grep <correlation id> data/logs/nanoclaw.log``. Standard-library loggers go through the same formatter.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Iterator

import structlog

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
]


def setup_logging(level: str = "INFO", log_dir: Path | None = None, *, max_bytes: int = 10 << 20, backups: int = 5,
                  console: bool = True) -> None:
    """Configure structlog and the root logger (idempotent; later calls replace the handlers)."""
    formatter = _formatter(structlog.processors.JSONRenderer())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(_formatter(structlog.dev.ConsoleRenderer()) if _is_terminal(sys.stderr) else formatter)
        root.addHandler(stream)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(log_dir / "nanoclaw.log", maxBytes=max_bytes, backupCount=backups)
        rotating.setFormatter(formatter)
        root.addHandler(rotating)
    root.setLevel(level)
    logging.getLogger("nats").setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _formatter(renderer) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer], foreign_pre_chain=_SHARED)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def get_logger(name: str, **bound: object) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name).bind(**bound)


@contextlib.contextmanager
def bind_event(service: str, event_type: str, correlation_id: str | None) -> Iterator[None]:
    """Bind the message being handled to every log line written inside the block (asyncio-task local)."""
    tokens = structlog.contextvars.bind_contextvars(service=service, event_type=event_type, correlation_id=correlation_id)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
