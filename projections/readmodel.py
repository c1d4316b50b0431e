"""A service's private read model: projections kept live in the service's own SQLite file.

Services share no database: a service that needs to query state (the router: registered groups, messages,
active runs) keeps its own copy of the projections it needs, rebuilt from the log. Before a handler sees the
event at stream sequence N, the harness waits until the read model has applied N (:meth:`wait_for`), so
queries reflect everything up to and including the event being handled.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Sequence

from events.store.port import EventStore
from events.tasks import cancel_and_wait
from projections.base import Projection
from projections.runner import ProjectionRunner
from projections.sqlite import open_db


class ReadModelTimeout(Exception):
    """The read model did not reach the wanted position in time."""


class LocalReadModel:
    """Args:
        path: SQLite file (created if missing).
        projections: the projections to keep.
        store: the event store to follow.
    """

    def __init__(self, path: Path | str, projections: Sequence[Projection], store: EventStore):
        self.db = open_db(path)
        self.db.row_factory = sqlite3.Row
        self.runner = ProjectionRunner(self.db, projections, store)
        self._advanced = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def position(self) -> int:
        return self.runner.position

    async def start(self) -> None:
        self.runner.prepare()
        self._task = asyncio.create_task(self._follow(), name="readmodel-follow")

    async def _follow(self) -> None:
        await self.runner.follow(progress=self._on_progress)

    def _on_progress(self, _applied: int, _seq: int) -> None:
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def wait_for(self, seq: int, timeout: float = 30.0) -> None:
        """Return once events up to stream sequence ``seq`` are applied.

        Raises:
            ReadModelTimeout: not reached within ``timeout`` s; names the infrastructure failure the follower is
                retrying after (a full disk), or the error that ended it. A bad message in the log never causes
                this: it is skipped (projections/runner.py).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < seq:
            if self._task is not None and self._task.done():
                exc = self._task.exception() if not self._task.cancelled() else None
                raise ReadModelTimeout(f"read model stopped at {self.position} before {seq}: {exc!r}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                failing = f"; retrying after: {self.runner.last_error}" if self.runner.last_error else ""
                raise ReadModelTimeout(f"read model at {self.position}, still short of {seq} after {timeout}s{failing}")
            try:
                async with asyncio.timeout(min(remaining, 0.5)):  # not wait_for: it can swallow a cancel (3.11)
                    await self._advanced.wait()
            except TimeoutError:
                pass

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        self.db.close()
