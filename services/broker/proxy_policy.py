"""What the model proxy forwards, and how often it records what it refuses.

**The allowlist.** The proxy spends the owner's Claude credential, so it forwards only what the agent's Claude
CLI needs. Measured on the CLI bundled with claude-agent-sdk 0.2.189 (CLI 2.1.332) against
``tests/stub_anthropic.py``, in process mode, through the proxy, and inside the Docker sandbox: every turn is
``POST /v1/messages?beta=true``; ``POST /v1/messages/count_tokens?beta=true`` comes from ``/context`` and from
tool search's sizing of MCP tools; the only other call, ``HEAD /api/hello``, is a connectivity probe the agent
switches off (``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``). Everything else (batches, files, models, skills,
…) would reach the owner's account beyond the per-group budget, so it is refused.

A request is matched on its method and its **raw** path (the request target up to ``?``, neither
percent-decoded nor dot-segment-normalised), byte for byte. Why raw: a decoded or normalised path is not
what goes upstream, and every layer between here and the API may normalise differently, so
``/v1/messages/../files``, ``//v1/files``, ``/v1/messages%2F..%2Ffiles`` or ``/v1/messages/`` must not match
``/v1/messages`` here. The forwarded URL is then built from the allowlisted path itself plus the raw query
(``?beta=true``), never from the client's path.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

# (method, raw path) → the ``endpoint`` recorded on ModelUsageRecorded.
FORWARDED: dict[tuple[str, str], str] = {
    ("POST", "/v1/messages"): "messages",
    ("POST", "/v1/messages/count_tokens"): "count_tokens",
}
ALLOWED_TEXT = " and ".join(f"{method} {path}" for method, path in FORWARDED)
MAX_SHOWN_PATH = 200  # a refused path is named in the reply, the log and the event, cut to this many characters


@dataclass(frozen=True)
class Target:
    """A raw request target: ``path`` up to the first ``?`` (as sent), ``query`` after it without the ``?``
    (``""`` when there is none), and whether a ``#`` came anywhere (then cut off both)."""

    path: str
    query: str
    has_fragment: bool = False

    @classmethod
    def of(cls, raw_target: str) -> "Target":
        before, hash_, _ = raw_target.partition("#")
        path, _, query = before.partition("?")
        return cls(path, query, bool(hash_))

    @property
    def shown(self) -> str:
        """The path for messages and events: without the query (which could carry anything), cut short, and
        with ``#…`` when the target had a fragment (so a refused ``/v1/messages#x`` does not read as allowed)."""
        path = self.path if len(self.path) <= MAX_SHOWN_PATH else self.path[:MAX_SHOWN_PATH] + "…"
        return path + "#…" if self.has_fragment else path


def forwarded_endpoint(method: str, target: Target) -> str | None:
    """``"messages"`` or ``"count_tokens"`` when ``method`` and the raw ``target.path`` are exactly an
    allowlisted endpoint (methods are case-sensitive, RFC 9110 §9.1) and the target has no ``#``; None for
    anything else. Why no ``#``: a request target has no fragment (RFC 9112 §3.2), so one can only be a trick
    for whatever parses the forwarded URL next."""
    if target.has_fragment:
        return None
    return FORWARDED.get((method, target.path))


class RefusalThrottle:
    """Limits how many refusals per run are *recorded* (appended as events); the refusal itself is never
    limited. Why: a valid run token could otherwise write an event per request into the log, as fast as it
    can send them. A token bucket per run: a burst of ``per_minute``, then one more every ``60 / per_minute``
    seconds.

    Args:
        per_minute: recorded refusals a run may produce in a burst, and per minute after it (≥ 1).
        clock: monotonic seconds (tests inject one).
        max_runs: runs tracked at once; the least recently refused run is forgotten first (run tokens are
            minted by the runner, one per run, so an agent cannot make up new runs to reset its bucket).
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_runs: int = 4096):
        if per_minute < 1:
            raise ValueError("per_minute must be 1 or more")
        self.per_minute, self.clock, self.max_runs = per_minute, clock, max_runs
        self._runs: OrderedDict[str, list[float]] = OrderedDict()  # run id → [tokens, last refill time, skipped]

    def admit(self, run_id: str) -> int | None:
        """Whether to record this refusal of ``run_id``: None → do not (it is counted as skipped); an int → do,
        and that many refusals of this run were skipped since the last recorded one (0 usually)."""
        now = self.clock()
        state = self._runs.pop(run_id, None) or [float(self.per_minute), now, 0]
        self._runs[run_id] = state  # most recently refused last
        while len(self._runs) > self.max_runs:
            self._runs.popitem(last=False)
        tokens, last, skipped = state
        tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
        if tokens < 1.0:
            state[:] = [tokens, now, skipped + 1]
            return None
        state[:] = [tokens - 1.0, now, 0]
        return int(skipped)
