"""The terminal side of ``nanoclaw chat``: reading lines, and printing replies without mangling the line being
typed. A reply that arrives while the ``you> `` prompt is shown clears that line, prints the reply, then
draws the prompt again with what was typed so far (readline's buffer) — instead of appearing after the prompt.

Replies are the agent's text, which can hold anything: control characters (terminal escape sequences) and
bidirectional overrides are shown as ``\\uNNNN`` so a reply cannot drive the terminal.
"""

from __future__ import annotations

import os
import sys
import threading
import unicodedata
from typing import TextIO

PROMPT = "you> "
CLEAR_LINE = "\r\x1b[2K"
"""Carriage return, then erase the whole line (ECMA-48 EL 2)."""


def printable(text: str) -> str:
    """``text`` with control and format characters (except newline and tab) as ``\\uNNNN``."""
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs") else f"\\u{ord(ch):04x}"
                   for ch in text)


def _typed_so_far() -> str:
    try:
        import readline  # noqa: PLC0415 - only where available (not on every platform); input() uses it when imported
    except ImportError:  # pragma: no cover - platform without readline
        return ""
    return readline.get_line_buffer()


class Terminal:
    """Args: ``stream``: where replies go (stdout); ``interactive``: a person types at a prompt (stdin is a TTY)."""

    def __init__(self, stream: TextIO | None = None, *, interactive: bool, stdin_fd: int | None = None):
        self.stream = stream or sys.stdout
        self.interactive = interactive
        self.prompt_shown = False
        self._lock = threading.Lock()
        self._fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
        self._pending = b""
        if interactive:
            # Line editing and history for input(); also what lets show() redraw the line being typed
            # (without readline, input() prompts on stderr and nothing knows the typed text).
            try:
                import readline  # noqa: F401, PLC0415
            except ImportError:  # pragma: no cover - platform without readline
                pass

    def read_line(self) -> str | None:
        """One line from stdin (blocking: call in a thread); None at end of input."""
        if not self.interactive:
            return self._read_raw_line()
        with self._lock:
            self.prompt_shown = True
        try:
            return input(PROMPT)
        except EOFError:
            return None
        finally:
            with self._lock:
                self.prompt_shown = False

    def _read_raw_line(self) -> str | None:
        """A line of piped input read from the file descriptor, not ``sys.stdin``: a thread blocked in
        ``sys.stdin.readline()`` holds the buffer's lock, and the interpreter then aborts at exit ("could not
        acquire lock for <stdin> at interpreter shutdown") when the session ends before the input does."""
        while b"\n" not in self._pending:
            chunk = os.read(self._fd, 65536)
            if not chunk:
                line, self._pending = self._pending, b""
                return line.decode("utf-8", errors="replace") if line else None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("utf-8", errors="replace").removesuffix("\r")

    def show(self, text: str) -> None:
        """Print one reply (made printable) on lines of its own."""
        text = printable(text)
        with self._lock:
            if self.prompt_shown:
                self.stream.write(f"{CLEAR_LINE}{text}\n{PROMPT}{_typed_so_far()}")
            else:
                self.stream.write(f"{text}\n")
            self.stream.flush()
