"""Time as a port: services that sleep until a due time (retries, scheduled tasks, grant expiry) take a
:class:`Clock`, so tests move time by hand (``tests/clock.py``) and never wait for real."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time (timezone-aware, UTC)."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once ``now() >= when`` (at once if it already is)."""
        ...


class SystemClock:
    """Wall-clock time. Sleeps in chunks of at most 60 s so a suspended host or a clock step is noticed."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep_until(self, when: datetime) -> None:
        while (delay := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(delay, 60.0))


def parse_time(value: str) -> datetime:
    """An ISO-8601 UTC string as stored in events (``…Z``) → an aware datetime.

    Raises: ValueError for a string that is not ISO-8601."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
