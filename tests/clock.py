"""A controllable clock for services that take a :class:`services.harness.clock.Clock`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)


class FakeClock:
    """A clock that moves only by :meth:`advance` / :meth:`set`; sleepers wake when it passes their time."""

    def __init__(self, start: datetime = T0):
        self._start = self._now = start
        self._sleepers: list[asyncio.Future] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        while self._now < when:
            fut = asyncio.get_running_loop().create_future()
            self._sleepers.append(fut)
            try:
                await fut
            finally:
                self._sleepers.remove(fut)

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forwards only: a clock never runs back)."""
        if when < self._now:
            raise ValueError(f"the clock cannot go back from {self._now} to {when}")
        self._now = when
        for fut in self._sleepers:
            if not fut.done():
                fut.set_result(None)

    @property
    def elapsed_s(self) -> float:
        """Seconds moved since the start."""
        return (self._now - self._start).total_seconds()
