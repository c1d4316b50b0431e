"""Read models the CLI rebuilds from the log in memory: commands read what the log says now, whether or not a
`nanoclaw up` (and its projections service) is running."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any, AsyncIterator, Sequence

from events.store.port import EventStore
from projections.base import Projection
from projections.runner import ProjectionRunner
from projections.sqlite import open_db


class MemoryReadModel:
    """The ``query`` port services' read-model code expects, over a rebuilt in-memory database."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()


@contextlib.asynccontextmanager
async def rebuilt(store: EventStore, projections: Sequence[Projection]) -> AsyncIterator[MemoryReadModel]:
    """``projections`` replayed from the whole log into a fresh in-memory SQLite database (rows as sqlite3.Row)."""
    db = open_db(":memory:")
    db.row_factory = sqlite3.Row
    try:
        runner = ProjectionRunner(db, list(projections), store)
        runner.prepare()
        await runner.catch_up()
        yield MemoryReadModel(db)
    finally:
        db.close()


async def rebuilt_rows(store: EventStore, projections: Sequence[Projection], sql: str,
                       params: Sequence[Any] = ()) -> list[dict]:
    """One query over freshly rebuilt ``projections``, rows as dicts."""
    async with rebuilt(store, projections) as rm:
        return [dict(r) for r in rm.query(sql, params)]
