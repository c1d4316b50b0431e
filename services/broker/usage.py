"""Token usage read from a Messages API response while it passes through the proxy.

Streaming responses (``text/event-stream``): ``message_start`` carries ``message.usage`` (input, cache and the
first output count), ``message.model`` and ``message.id``; each ``message_delta`` carries ``usage`` whose counts
are cumulative, so a later value replaces an earlier one (Messages streaming docs: "The token counts shown in the
usage field of the message_delta event are cumulative"). Non-streaming responses (``application/json``) carry the
same ``usage`` object once, in the body.

The meter sees bytes in whatever chunks the network delivers; it never changes or holds them back. Only the
events that carry usage are JSON-decoded, and a single SSE line longer than ``MAX_LINE`` is skipped (content
deltas are small; a usage event never comes near it), so memory stays bounded whatever the stream holds. Each
event's JSON is expected on one ``data:`` line, as the API sends it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_LINE = 1 << 20
MAX_JSON_BODY = 64 << 20
_USAGE_EVENTS = {"message_start", "message_delta"}


@dataclass
class Usage:
    """Tokens of one call. ``cache_write_1h_tokens`` is the 1-hour part of ``cache_creation_input_tokens`` when
    the API reports the split (``usage.cache_creation.ephemeral_1h_input_tokens``), for pricing only."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_1h_tokens: int = 0
    model: str | None = None
    message_id: str | None = None

    def update(self, usage: Any) -> None:
        """Take every count present in an API ``usage`` object (absent or null counts keep their value)."""
        if not isinstance(usage, dict):
            return
        for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(self, name, value)
        split = usage.get("cache_creation")
        if isinstance(split, dict) and isinstance(split.get("ephemeral_1h_input_tokens"), int):
            self.cache_write_1h_tokens = max(0, split["ephemeral_1h_input_tokens"])

    def take_message(self, message: Any) -> None:
        if isinstance(message, dict):
            self.model = message.get("model") if isinstance(message.get("model"), str) else self.model
            self.message_id = message.get("id") if isinstance(message.get("id"), str) else self.message_id
            self.update(message.get("usage"))


class UsageMeter:
    """Feed it the response body chunk by chunk; read :attr:`usage` once the body has ended.

    Args:
        content_type: the response's Content-Type; SSE and JSON bodies are read, anything else is ignored.
    """

    def __init__(self, content_type: str):
        kind = content_type.split(";")[0].strip().lower()
        self.mode = "sse" if kind == "text/event-stream" else "json" if kind == "application/json" else None
        self.usage = Usage()
        self._buf = bytearray()
        self._skipping = False  # inside an over-long SSE line
        self._event: str | None = None

    def feed(self, chunk: bytes) -> None:
        if self.mode == "json":
            if len(self._buf) + len(chunk) <= MAX_JSON_BODY:
                self._buf += chunk
            return
        if self.mode != "sse":
            return
        self._buf += chunk
        while (end := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            self._line(line)
        if len(self._buf) > MAX_LINE:
            self._buf.clear()
            self._skipping = True

    def finish(self) -> Usage:
        """End of body: parse a JSON body (a malformed or truncated one gives zero counts)."""
        if self.mode == "json" and self._buf:
            try:
                self.usage.take_message(json.loads(self._buf))
            except (ValueError, UnicodeDecodeError):
                pass
            self._buf.clear()
        return self.usage

    def _line(self, line: bytes) -> None:
        if not line:
            self._event = None  # a blank line ends an SSE event
        elif line.startswith(b"event:"):
            self._event = line[6:].strip().decode("utf-8", "replace")
        elif line.startswith(b"data:") and (self._event in _USAGE_EVENTS or
                                             (self._event is None and b'"message_' in line)):
            try:
                data = json.loads(line[5:])
            except (ValueError, UnicodeDecodeError):
                return
            if not isinstance(data, dict):
                return
            if data.get("type") == "message_start":
                self.usage.take_message(data.get("message"))
            elif data.get("type") == "message_delta":
                self.usage.update(data.get("usage"))
