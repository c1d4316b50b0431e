"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, interval: float = 0.02, *,
                     detail: object = None) -> None:
    """Wait until ``check()`` is true; fail with AssertionError after ``timeout`` s (a bound, not a speed claim),
    naming ``detail`` (as it is then, e.g. a list the check watches) when given."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s" + ("" if detail is None else f": {detail}"))
        await asyncio.sleep(interval)


async def has_at_least(coro: Awaitable[list], n: int) -> bool:
    """For :func:`eventually`: the awaited list has ``n`` or more items."""
    return len(await coro) >= n


async def equals(coro: Awaitable[object], expected: object) -> bool:
    """For :func:`eventually`: the awaited value equals ``expected``."""
    return await coro == expected


def projected(path, seq: int) -> bool:
    """For :func:`eventually`: every projection in the SQLite read model at ``path`` has applied stream
    sequence ``seq``."""
    if not path.exists():
        return False
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT min(last_seq) FROM projection_tracking").fetchone()
        return row[0] is not None and row[0] >= seq
    finally:
        db.close()
