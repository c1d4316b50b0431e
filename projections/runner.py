"""Run projections over the event log: catch up from the tracked position, then (optionally) follow.

Events are applied in batches; each batch's rows and the new tracking positions are committed in one SQLite
transaction (exactly-once effect). A projection whose stored ``version`` differs from its class is dropped
and rebuilt from the start of the log.

A message in the log that is not a valid commit (:func:`projections.base.records`), or that a projection fails
on, is skipped by that projection, whole commit at once, and recorded in ``skipped_messages`` in the same
transaction (with a log line); later events keep flowing. Every runner decides this the same way from the log
alone, so two rebuilds stay identical. Recording a skip in the log (``MessageDeadLettered``) is the job of the
one follower with a durable position, the projections service (services/projector/dead_letters.py), so a
replay does not report it again. An infrastructure failure (:mod:`projections.failures`) skips nothing: the
batch is rolled back and :meth:`ProjectionRunner.follow` retries it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from events.errors import InvalidEvent
from events.store.port import EventStore
from projections.base import EventRecord, Projection, records
from projections.failures import is_infrastructure
from projections.sqlite import forget_skips, record_skip, set_tracking, tracked

log = logging.getLogger("nanoclaw.projections")

Progress = Callable[[int, int], None]
"""``progress(applied_events, last_seq_read)``."""


RETRY_MAX_S = 30.0
"""Longest pause (s) between :meth:`ProjectionRunner.follow`'s attempts after an infrastructure failure."""


class ProjectionError(Exception):
    """An infrastructure failure (SQLite could not write: disk full, I/O error, …) while applying a batch; the
    batch was rolled back and nothing was skipped."""


class _Poisoned(Exception):
    """Internal: projection ``name`` failed on the commit at ``seq``; the batch was rolled back to be redone
    without that (commit, projection) pair."""

    def __init__(self, seq: int, name: str, reason: str):
        super().__init__(reason)
        self.seq, self.name, self.reason = seq, name, reason


@dataclass
class ProjectionRunner:
    """Args:
        db: an open read-model database (:func:`projections.sqlite.open_db`).
        projections: the read models kept in this database.
        store: the event store.
        batch_size: events per transaction while catching up.
        on_skip: called after a batch that skipped a message has committed (``skipped_messages`` holds it).
    """

    db: sqlite3.Connection
    projections: Sequence[Projection]
    store: EventStore
    batch_size: int = 1000
    on_skip: Callable[[], None] | None = None
    positions: dict[str, int] = field(default_factory=dict)
    last_error: ProjectionError | None = field(default=None, init=False)
    """The infrastructure failure :meth:`follow` is retrying after (None once a batch commits again)."""
    _failed: dict[tuple[int, str], str] = field(default_factory=dict, init=False, repr=False)
    """(seq, projection) pairs found poisoned in the batch in hand, with the reason; cleared when it commits."""

    def prepare(self) -> None:
        """Create tables; drop and recreate those of projections whose version changed (rebuild)."""
        with _transaction(self.db):
            for p in self.projections:
                state = tracked(self.db, p.name)
                if state and state[0] != p.version:
                    log.warning("projection %s version %s -> %s: rebuilding from the log", p.name, state[0], p.version)
                    for table in p.tables:
                        self.db.execute(f'DROP TABLE IF EXISTS "{table}"')
                    forget_skips(self.db, p.name)
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
        """Catch up, then keep applying new events until ``stop`` is set (or the task is cancelled).

        An infrastructure failure is logged, kept in :attr:`last_error` and retried from the last committed
        position after a pause that doubles up to :data:`RETRY_MAX_S`: a full disk stops the read model until
        there is room again, and loses nothing.
        """
        delay = 1.0
        while True:
            try:
                await self._run(follow=True, stop=stop, progress=progress)
                return
            except ProjectionError as exc:
                if self.last_error is None:
                    delay = 1.0  # a fresh failure after batches committed again starts the backoff over
                self.last_error = exc
                log.error("projections stopped at seq %s; retrying in %.0f s: %s", self.position, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

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
                    # Handed over before applying: a batch that fails is not applied again by the ``finally``
                    # below (which flushes what a cancel or a break leaves behind).
                    pending, batch = batch, []
                    applied += self._apply(pending, until)
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
        """Apply a batch in one transaction; a projection failing on a commit rolls the batch back, and the batch
        is redone with that (commit, projection) pair skipped. Redoing costs only when poison is met; a SQLite
        savepoint per commit would cost ≈1.5 µs on every commit of every replay. Terminates: each round adds a
        pair, and a batch has finitely many."""
        while True:
            skips: list[tuple[int, str, list[str], str]] = []
            try:
                count = self._apply_batch(batch, until, skips)
            except _Poisoned as poisoned:
                self._failed[(poisoned.seq, poisoned.name)] = poisoned.reason
                continue
            self._failed.clear()
            self.last_error = None
            for seq, subject, names, reason in skips:  # logged once committed: a redone batch would repeat them
                who = "every projection" if len(names) == len(self.projections) else ", ".join(names)
                log.warning("message seq %s on %s skipped by %s: %s", seq, subject, who, reason)
            if skips and self.on_skip is not None:
                self.on_skip()
            return count

    def _apply_batch(self, batch: list[tuple[int, str, object, bytes]], until: dict[str, int] | None,
                     skips: list[tuple[int, str, list[str], str]]) -> int:
        count = 0
        # Positions advance in a copy, adopted only once the transaction has committed: a failed batch is rolled
        # back, and ``position`` (what LocalReadModel.wait_for trusts) must not claim its events.
        positions = dict(self.positions)
        failed = self._failed
        with _transaction(self.db):
            for seq, subject, stored_at, body in batch:
                try:
                    recs: list[EventRecord] | None = records(seq, subject, stored_at, body)  # type: ignore[arg-type]
                except InvalidEvent as exc:
                    recs, invalid, skipped_by = None, f"not a valid commit: {exc}", []
                for p in self.projections:
                    if seq <= positions[p.name] or (until is not None and seq > until.get(p.name, 0)):
                        continue
                    positions[p.name] = seq
                    if recs is None:
                        skipped_by.append(p.name)
                    elif failed and (seq, p.name) in failed:
                        skips.append((seq, subject, [p.name], failed[(seq, p.name)]))
                    else:
                        for rec in recs:
                            if p.wants(rec.type):
                                self._apply_one(p, rec)
                                count += 1
                if recs is None and skipped_by:
                    skips.append((seq, subject, skipped_by, invalid))
            for seq, subject, names, reason in skips:
                for name in names:
                    record_skip(self.db, seq, name, subject, reason)
            for p in self.projections:
                set_tracking(self.db, p.name, p.version, positions[p.name])
        self.positions = positions
        return count

    def _apply_one(self, p: Projection, rec: EventRecord) -> None:
        try:
            p.apply(self.db, rec)
        except Exception as exc:  # noqa: BLE001 - sorted into poison (skip) and infrastructure (stop) below
            where = f"projection {p.name} failed on seq {rec.seq} ({rec.type}): {type(exc).__name__}: {exc}"
            if is_infrastructure(exc):
                raise ProjectionError(where) from exc
            raise _Poisoned(rec.seq, p.name, where) from exc


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite itself rolls back on some errors (disk full, I/O): nothing to undo
            self.db.execute("ROLLBACK")
