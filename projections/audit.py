"""Audit: rebuild read models from the log, and verify live read models against a rebuild.

``verify`` replays the log into a temporary database up to each projection's tracked position in the live
database, then compares the two table by table with a deterministic checksum (SHA-256 over the rows in
primary-key/all-column order), so a live database that is ahead of or behind the log is not a false alarm.

Messages of the log the replay skipped (not valid commits, or a projection failed on them) are findings, not
differences: the log is immutable, so a skipped message stays forever, and failing on it would fail every
audit after it. What an auditor must learn is that it was *noticed*: ``verify_report`` names each one with
the services whose ``MessageDeadLettered`` event records it, and counts one that nobody recorded as a failure.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from events.store.port import EventStore
from projections.base import Projection
from projections.dead_letters import dead_lettered
from projections.runner import Progress, ProjectionRunner
from projections.sqlite import SkippedMessage, open_db, skipped_messages, tracked


class AuditError(Exception):
    """The audit could not run (e.g. the target exists, or the live database has no projections)."""


@dataclass(frozen=True)
class TableCheck:
    table: str
    live_rows: int
    rebuilt_rows: int
    live_checksum: str
    rebuilt_checksum: str

    @property
    def ok(self) -> bool:
        return self.live_checksum == self.rebuilt_checksum


@dataclass(frozen=True)
class VerifyReport:
    """What ``audit verify`` found: each table's comparison, the messages the replay skipped (in stream order),
    and, per stream sequence, the services whose ``MessageDeadLettered`` event names that message."""

    tables: list[TableCheck]
    skipped: list[SkippedMessage]
    recorded_by: dict[int, set[str]]

    @property
    def unrecorded(self) -> list[SkippedMessage]:
        """Skipped messages no ``MessageDeadLettered`` event accounts for (skipped silently: a failure)."""
        return [m for m in self.skipped if m.seq not in self.recorded_by]

    @property
    def ok(self) -> bool:
        """Every table matches the log and every skipped message is recorded."""
        return all(c.ok for c in self.tables) and not self.unrecorded


def table_checksum(db: sqlite3.Connection, table: str) -> tuple[int, str]:
    """``(row count, sha256 hex)`` of a table, independent of insertion order."""
    cols = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
    if not cols:
        return 0, hashlib.sha256(b"").hexdigest()
    order = ", ".join(f'"{c}"' for c in cols)
    digest = hashlib.sha256()
    count = 0
    for row in db.execute(f'SELECT {order} FROM "{table}" ORDER BY {order}'):
        digest.update(repr(row).encode())
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


async def rebuild(store: EventStore, target: Path, projections: Sequence[Projection], *, force: bool = False,
                  progress: Progress | None = None, until: dict[str, int] | None = None) -> int:
    """Replay the whole log (or, per projection, up to the stream sequence ``until[name]``: the as-of rebuild of
    projections/asof.py) into a fresh database at ``target``. Built beside it and renamed at the end, so a
    failed rebuild leaves nothing half-written. Returns the number of events applied.

    Raises:
        AuditError: ``target`` exists and ``force`` is false.
    """
    target = Path(target)
    if target.exists() and not force:
        raise AuditError(f"{target} exists; choose a new path or pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".building", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        db = open_db(tmp)
        try:
            runner = ProjectionRunner(db, projections, store)
            runner.prepare()
            applied = await runner.catch_up(until=until, progress=progress)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
        for suffix in ("-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        os.replace(tmp, target)
        return applied
    except BaseException:
        for p in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
            p.unlink(missing_ok=True)
        raise


async def verify(store: EventStore, live_path: Path, projections: Sequence[Projection],
                 progress: Progress | None = None) -> list[TableCheck]:
    """The table comparison of :func:`verify_report` alone."""
    return (await verify_report(store, live_path, projections, progress)).tables


async def verify_report(store: EventStore, live_path: Path, projections: Sequence[Projection],
                        progress: Progress | None = None) -> VerifyReport:
    """Rebuild into a temporary database and compare with ``live_path`` table by table; report the messages
    the rebuild skipped and whether a ``MessageDeadLettered`` event (of any service) records each.

    Raises:
        AuditError: the live database is missing or has none of the projections.
    """
    if not Path(live_path).exists():
        raise AuditError(f"no read-model database at {live_path}")
    live = sqlite3.connect(f"file:{live_path}?mode=ro", uri=True)
    try:
        positions = {}
        for p in projections:
            state = tracked(live, p.name)
            if state is not None:
                positions[p.name] = state[1]
        if not positions:
            raise AuditError(f"{live_path} holds none of the projections {[p.name for p in projections]}")
        chosen = [p for p in projections if p.name in positions]
        with tempfile.TemporaryDirectory(prefix="nanoclaw-verify-") as tmpdir:
            fresh = open_db(Path(tmpdir) / "rebuilt.db")
            try:
                runner = ProjectionRunner(fresh, chosen, store)
                runner.prepare()
                await runner.catch_up(until=positions, progress=progress)
                checks = []
                for p in chosen:
                    for table in p.tables:
                        lc, ls = table_checksum(live, table)
                        rc, rs = table_checksum(fresh, table)
                        checks.append(TableCheck(table, lc, rc, ls, rs))
                skipped = skipped_messages(fresh)
            finally:
                fresh.close()
    finally:
        live.close()
    return VerifyReport(checks, skipped, await dead_lettered(store) if skipped else {})
