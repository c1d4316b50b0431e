"""Run projections over the event log: catch up from the tracked position, then (optionally) follow.

Events are applied in batches; each batch's rows and the new tracking positions are committed in one SQLite
transaction (exactly-once effect). A projection whose stored ``version`` differs from its class is dropped
and rebuilt from the start of the log.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from events.store.port import EventStore
from projections.base import EventRecord, Projection, records
from projections.sqlite import set_tracking, tracked

log = logging.getLogger("nanoclaw.projections")

Progress = Callable[[int, int], None]
"""``progress(applied_events, last_seq_read)``."""


class ProjectionError(Exception):
    """A projection failed to apply an event; the batch was rolled back."""


@dataclass
class ProjectionRunner:
    """Args:
        db: an open read-model database (:func:`projections.sqlite.open_db`).
        projections: the read models kept in this database.
        store: the event store.
        batch_size: events per transaction while catching up.
    """

    db: sqlite3.Connection
    projections: Sequence[Projection]
    store: EventStore
    batch_size: int = 1000
    positions: dict[str, int] = field(default_factory=dict)

    def prepare(self) -> None:
        """Create tables; drop and recreate those of projections whose version changed (rebuild)."""
        with _transaction(self.db):
            for p in self.projections:
                state = tracked(self.db, p.name)
                if state and state[0] != p.version:
                    log.warning("projection %s version %s -> %s: rebuilding from the log", p.name, state[0], p.version)
                    for table in p.tables:
                        self.db.execute(f'DROP TABLE IF EXISTS "{table}"')
                    state = None
                for ddl in p.tables.values():
                    for statement in filter(str.strip, ddl.split(";")):  # executescript would COMMIT our transaction
                        self.db.execute(statement)
                if state is None:
                    set_tracking(self.db, p.name, p.version, 0)
                self.positions[p.name] = state[1] if state else 0

    @property
    def position(self) -> int:
        """The lowest tracked position: events after it may still be unapplied for some projection."""
        return min(self.positions.values(), default=0)

    async def catch_up(self, *, until: dict[str, int] | None = None, progress: Progress | None = None) -> int:
        """Apply every event up to the log's end (or, per projection, up to ``until[name]``). Returns the count."""
        return await self._run(follow=False, until=until, progress=progress)

    async def follow(self, stop: asyncio.Event | None = None, progress: Progress | None = None) -> None:
        """Catch up, then keep applying new events until ``stop`` is set (or the task is cancelled)."""
        await self._run(follow=True, stop=stop, progress=progress)

    async def _run(self, *, follow: bool, until: dict[str, int] | None = None, stop: asyncio.Event | None = None,
                   progress: Progress | None = None) -> int:
        if not self.positions:
            self.prepare()
        start = self.position
        limit = max(until.values()) if until else None
        applied = 0
        batch: list[tuple[int, str, object, bytes]] = []
        last_flush = time.monotonic()
        if limit is not None and limit <= start:
            return 0
        stream = self.store.read_raw(after_seq=start, follow=follow)
        try:
            async for raw in stream:
                batch.append((raw.seq, raw.subject, raw.stored_at, raw.data))
                end_of_log = raw.num_pending == 0
                if len(batch) >= self.batch_size or end_of_log or time.monotonic() - last_flush > 0.2:
                    applied += self._apply(batch, until)
                    batch.clear()
                    last_flush = time.monotonic()
                    if progress:
                        progress(applied, raw.seq)
                if limit is not None and raw.seq >= limit:
                    break
                if stop is not None and stop.is_set() and end_of_log:
                    break
        finally:
            if batch:
                applied += self._apply(batch, until)
                if progress:
                    progress(applied, batch[-1][0])
            await stream.aclose()
        return applied

    def _apply(self, batch: list[tuple[int, str, object, bytes]], until: dict[str, int] | None) -> int:
        count = 0
        # Positions advance in a copy, adopted only once the transaction has committed: a failed batch is rolled
        # back, and ``position`` (what LocalReadModel.wait_for trusts) must not claim its events.
        positions = dict(self.positions)
        with _transaction(self.db):
            for seq, subject, stored_at, body in batch:
                try:
                    recs = list(records(seq, subject, stored_at, body))  # type: ignore[arg-type]
                except ValueError:
                    log.error("event seq %s on %s is not JSON; skipped by projections (dead-lettered by services)", seq, subject)
                    recs = []
                for p in self.projections:
                    if seq <= positions[p.name] or (until is not None and seq > until.get(p.name, 0)):
                        continue
                    for rec in recs:
                        if p.wants(rec.type):
                            try:
                                p.apply(self.db, rec)
                            except Exception as exc:
                                raise ProjectionError(f"projection {p.name} failed on seq {seq} ({rec.type}): {exc}") from exc
                            count += 1
                    positions[p.name] = seq
            for p in self.projections:
                set_tracking(self.db, p.name, p.version, positions[p.name])
        self.positions = positions
        return count


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
