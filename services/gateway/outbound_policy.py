"""Channel-independent outbound rules: per-chat rate limit, send-retry backoff, and the reply prefix.

NanoClaw v1 sends as fast as the agent produces text; a reply loop (quirk 14, #273: prefix-less echoes) then
floods the chat and risks a WhatsApp ban. The rate limiter caps that damage without touching normal use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MESSAGES_PER_MINUTE = 20.0
DEFAULT_BURST = 5
# NanoClaw v1's BASE_RETRY_MS and WhatsApp reconnect delay are both 5 s (nanoclaw-behaviour §2, §21.5).
SEND_RETRY_BASE_SECONDS = 5.0
SEND_RETRY_CAP_SECONDS = 300.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class ChatRateLimiter:
    """A token bucket per chat: ``burst`` messages at once, then ``messages_per_minute`` sustained.

    :meth:`reserve` books the next send slot and returns how long to wait for it, so concurrent senders
    to one chat queue up behind each other instead of all waking at the same instant (tokens may go negative:
    each reservation pushes the next one further out).

    Args:
        messages_per_minute: sustained rate per chat (> 0).
        burst: bucket size, i.e. how many messages may go out back to back (>= 1).
        clock: monotonic seconds (``time.monotonic``); inject a fake in tests.
        max_chats: idle chats whose bucket is full again are forgotten once more than this many are tracked.

    Raises:
        ValueError: a non-positive rate or burst.
    """

    def __init__(self, messages_per_minute: float = DEFAULT_MESSAGES_PER_MINUTE, burst: int = DEFAULT_BURST, *,
                 clock: Callable[[], float] = time.monotonic, max_chats: int = 10_000) -> None:
        if messages_per_minute <= 0 or burst < 1:
            raise ValueError(f"need messages_per_minute > 0 and burst >= 1, got {messages_per_minute}, {burst}")
        self._rate = messages_per_minute / 60.0  # tokens per second
        self._burst = float(burst)
        self._clock = clock
        self._max_chats = max_chats
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, chat_jid: str, now: float) -> _Bucket:
        b = self._buckets.get(chat_jid)
        if b is None:
            b = self._buckets[chat_jid] = _Bucket(self._burst, now)
        else:
            b.tokens = min(self._burst, b.tokens + (now - b.updated) * self._rate)
            b.updated = now
        return b

    def delay(self, chat_jid: str) -> float:
        """Seconds until a send to ``chat_jid`` would be allowed, without booking it."""
        b = self._refill(chat_jid, self._clock())
        return 0.0 if b.tokens >= 1 else (1 - b.tokens) / self._rate

    def reserve(self, chat_jid: str) -> float:
        """Book one send to ``chat_jid``; returns the seconds to wait before sending it (0.0 = now)."""
        now = self._clock()
        b = self._refill(chat_jid, now)
        wait = 0.0 if b.tokens >= 1 else (1 - b.tokens) / self._rate
        b.tokens -= 1
        if len(self._buckets) > self._max_chats:
            self._forget_idle(now)
        return wait

    def _forget_idle(self, now: float) -> None:
        # A full bucket carries no state: forgetting it and recreating it later is the same thing.
        for jid in [j for j, b in self._buckets.items() if b.tokens + (now - b.updated) * self._rate >= self._burst]:
            del self._buckets[jid]


def send_retry_delay(attempt: int, *, base: float = SEND_RETRY_BASE_SECONDS,
                     cap: float = SEND_RETRY_CAP_SECONDS) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry) of a send that failed or found the
    channel disconnected: ``base * 2**(attempt-1)``, capped at ``cap``. 5, 10, 20, 40, … 300 s by default.

    No jitter: there is one WhatsApp connection and it is our own, so there is no herd to spread out.

    Raises:
        ValueError: ``attempt < 1``.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    # min() on the exponent first keeps 2**attempt from overflowing a float for absurd attempt numbers.
    return min(cap, base * 2.0 ** min(attempt - 1, 64))


def reply_prefix(assistant_name: str, has_own_number: bool) -> str:
    """``"<name>: "`` on a shared number, ``""`` when the assistant has its own number.

    As NanoClaw v1 whatsapp.ts ``sendMessage``, in groups and DMs alike (nanoclaw-behaviour §10): on a shared
    number the prefix is how readers, and the bot itself, tell its replies from the owner's messages."""
    return "" if has_own_number else f"{assistant_name}: "


def reply_text(text: str, assistant_name: str, has_own_number: bool) -> str:
    """``text`` as it goes on the wire: prefixed per :func:`reply_prefix`.

    Departure from v1: text that already starts with ``"<name>:"`` is not prefixed again (no
    ``"Andy: Andy: hi"``); bot-message detection only looks at ``startswith("<name>:")``, which still holds."""
    prefix = reply_prefix(assistant_name, has_own_number)
    if not prefix or text.startswith(prefix.rstrip()):
        return text
    return prefix + text
