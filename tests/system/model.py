"""The stub model of the system tests: every Messages API request is answered ``re <ids>``, naming the message
ids (``g03-00017``) found in the request, so a reply tells which messages it answers."""

from __future__ import annotations

import re
import time
from typing import Any

from tests.stub_anthropic import StubAnthropic

MESSAGE_ID = re.compile(r"\bg\d{2}-\d{5}\b")


def ids_in(text: str) -> list[str]:
    """The message ids in ``text``, in order of appearance."""
    return MESSAGE_ID.findall(text)


def request_text(body: dict[str, Any]) -> str:
    return " ".join(m["content"] if isinstance(m.get("content"), str) else str(m.get("content"))
                    for m in body.get("messages", []))


class EchoModel(StubAnthropic):
    """``StubAnthropic`` answering ``re <ids>``; ``seen`` keeps ``(monotonic time, ids)`` per request."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, list[str]]] = []
        super().__init__(script=self._answer)

    def _answer(self, body: dict[str, Any]) -> tuple[str, str]:
        ids = ids_in(request_text(body))
        self.arrivals.append((time.monotonic(), ids))
        return ("text", "re " + (" ".join(ids) if ids else "-"))
