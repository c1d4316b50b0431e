"""The container protocol: the stdin ``ContainerInput`` and the stdout output markers (docs/agent-runs.md).

stdin is one JSON object (shape in ``ContainerInput``). stdout carries only marker blocks::

    ---NANOCLAW_OUTPUT_START---
    {"status":"success"|"error","result":str|null,"newSessionId":str|null,"error":str|null,"idle":bool}
    ---NANOCLAW_OUTPUT_END---

``idle`` is true on the one block that ends a query (the agent now waits for input: the queue may pipe the next
turns) and false on results within a query; an older agent leaves it out. Each block is written and flushed at once, because every marker resets the runner's hard timeout.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO

OUTPUT_START = "---NANOCLAW_OUTPUT_START---"
OUTPUT_END = "---NANOCLAW_OUTPUT_END---"


class InputError(ValueError):
    """stdin is not a valid ``ContainerInput``; the message names the offending field (e.g. ``nats.url``)."""


@dataclass(frozen=True)
class NatsSettings:
    """This run's NATS identity. ``url``: one server or several, comma-separated (a cluster's nodes).
    ``user``/``password`` may be None (a server without auth, in tests)."""

    url: str
    user: str | None
    password: str | None
    inbox_prefix: str
    input_subject: str
    ipc_prefix: str

    def __repr__(self) -> str:  # never let the password reach a log line
        return f"NatsSettings(url={self.url!r}, user={self.user!r}, input_subject={self.input_subject!r})"


@dataclass(frozen=True)
class ModelSettings:
    """The model proxy (``base_url``) and this run's proxy token (not an API key; the proxy injects that)."""

    base_url: str
    token: str

    def __repr__(self) -> str:
        return f"ModelSettings(base_url={self.base_url!r})"


@dataclass(frozen=True)
class ContainerInput:
    """One run's input, parsed from stdin by ``parse_input``."""

    run_id: str
    prompt: str
    session_id: str | None
    group_folder: str
    chat_jid: str
    is_main: bool
    is_scheduled_task: bool
    assistant_name: str
    script: str | None
    nats: NatsSettings
    model: ModelSettings


_MISSING = object()


def _field(obj: dict[str, Any], name: str, kind: type, where: str, *, optional: bool = False,
           default: Any = _MISSING) -> Any:
    """``obj[name]`` checked against ``kind``. Optional fields accept null or absence; a field with a default
    may be absent but not null. Raises ``InputError`` naming ``<where><name>``."""
    path = f"{where}{name}"
    value = obj.get(name, _MISSING)
    if value is _MISSING:
        if optional:
            return None
        if default is not _MISSING:
            return default
        raise InputError(f"{path}: missing")
    if value is None and optional:
        return None
    # bool is a subclass of int, and nothing here wants an int, so isinstance is exact enough.
    if not isinstance(value, kind):
        raise InputError(f"{path}: expected {kind.__name__}, got {_type_name(value)}")
    if kind is str and not optional and not value:
        raise InputError(f"{path}: must not be empty")
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _object(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if not isinstance(value, dict):
        raise InputError(f"{name}: expected object, got {_type_name(value)}")
    return value


def parse_input(text: str | bytes) -> ContainerInput:
    """Parse the stdin JSON. Unknown fields are ignored (a newer runner may send more).

    Raises:
        InputError: not JSON, not an object, or a field missing / of the wrong type (the message names it).
    """
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"stdin is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InputError(f"stdin: expected a JSON object, got {type(raw).__name__}")
    n, m = _object(raw, "nats"), _object(raw, "model")
    return ContainerInput(
        run_id=_field(raw, "run_id", str, ""),
        prompt=_field(raw, "prompt", str, ""),
        session_id=_field(raw, "session_id", str, "", optional=True) or None,
        group_folder=_field(raw, "group_folder", str, ""),
        chat_jid=_field(raw, "chat_jid", str, ""),
        is_main=_field(raw, "is_main", bool, ""),
        is_scheduled_task=_field(raw, "is_scheduled_task", bool, "", default=False),
        assistant_name=_field(raw, "assistant_name", str, "", optional=True) or "",
        script=_field(raw, "script", str, "", optional=True) or None,
        nats=NatsSettings(
            url=_field(n, "url", str, "nats."),
            user=_field(n, "user", str, "nats.", optional=True),
            password=_field(n, "password", str, "nats.", optional=True),
            inbox_prefix=_field(n, "inbox_prefix", str, "nats."),
            input_subject=_field(n, "input_subject", str, "nats."),
            ipc_prefix=_field(n, "ipc_prefix", str, "nats."),
        ),
        model=ModelSettings(base_url=_field(m, "base_url", str, "model."), token=_field(m, "token", str, "model.")),
    )


class MarkerWriter:
    """Writes output markers to a private binary stream (the real stdout; see ``take_stdout``).

    Thread-safe; each block is one write plus flush, so blocks never interleave.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    @classmethod
    def take_stdout(cls) -> "MarkerWriter":
        """Own fd 1 for the protocol and point fd 1 (and ``sys.stdout``) at stderr.

        Why: stdout is the protocol, so a stray ``print`` in a library or a child process inheriting fd 1
        must land on stderr instead of corrupting the marker stream.
        """
        sys.stdout.flush()
        private = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(os.fdopen(private, "wb", buffering=0))

    def write(self, status: str, result: str | None, session_id: str | None, error: str | None = None,
              idle: bool = False) -> None:
        """Emit one block: ``status`` is "success" or "error"; ``result`` the user-facing text or None; ``idle``
        true when the query is over and the agent waits for input."""
        body = json.dumps({"status": status, "result": result, "newSessionId": session_id, "error": error,
                           "idle": idle}, ensure_ascii=False)
        block = f"{OUTPUT_START}\n{body}\n{OUTPUT_END}\n".encode()
        with self._lock:
            self._stream.write(block)
            self._stream.flush()

    def success(self, result: str | None, session_id: str | None, idle: bool = False) -> None:
        self.write("success", result, session_id, idle=idle)

    def error(self, error: str, session_id: str | None) -> None:
        self.write("error", None, session_id, error)
