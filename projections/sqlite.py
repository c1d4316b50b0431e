"""SQLite plumbing shared by projections: connection settings, the tracking table and the skip record."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS projection_tracking (
  name TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  last_seq INTEGER NOT NULL
)"""

SKIPPED_DDL = """
CREATE TABLE IF NOT EXISTS skipped_messages (
  seq INTEGER NOT NULL,
  projection TEXT NOT NULL,
  subject TEXT NOT NULL,
  reason TEXT NOT NULL,
  PRIMARY KEY (seq, projection)
)"""
"""Messages of the log a projection skipped (not a valid commit, or the projection failed on it), written in
the same transaction as the tracking position: a deterministic function of the log and the projection code,
like the projection's own tables."""


def open_db(path: Path | str) -> sqlite3.Connection:
    """Open a read-model database: WAL (readers never block the projector), ``synchronous=NORMAL`` (a power
    cut may lose the last transactions, which are replayed from the log: the tracking row is in the same
    transaction). Autocommit is off; callers commit."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute(TRACKING_DDL)
    db.execute(SKIPPED_DDL)
    return db


def tracked(db: sqlite3.Connection, name: str) -> tuple[int, int] | None:
    """``(version, last_seq)`` of a projection, or None if it never ran in this database."""
    row = db.execute("SELECT version, last_seq FROM projection_tracking WHERE name=?", (name,)).fetchone()
    return (row[0], row[1]) if row else None


def set_tracking(db: sqlite3.Connection, name: str, version: int, last_seq: int) -> None:
    db.execute(
        "INSERT INTO projection_tracking(name, version, last_seq) VALUES (?,?,?) "
        "ON CONFLICT(name) DO UPDATE SET version=excluded.version, last_seq=excluded.last_seq",
        (name, version, last_seq),
    )


@dataclass(frozen=True)
class SkippedMessage:
    """One message of the log that projections of this database skipped: its stream ``seq`` and ``subject``,
    the distinct ``reasons`` and the ``projections`` that skipped it (both sorted)."""

    seq: int
    subject: str
    reasons: tuple[str, ...]
    projections: tuple[str, ...]


def record_skip(db: sqlite3.Connection, seq: int, projection: str, subject: str, reason: str) -> None:
    db.execute("INSERT OR REPLACE INTO skipped_messages VALUES (?,?,?,?)", (seq, projection, subject, reason))


def forget_skips(db: sqlite3.Connection, projection: str) -> None:
    """Drop a projection's skip records (it is being rebuilt from the log, which records them again)."""
    db.execute("DELETE FROM skipped_messages WHERE projection=?", (projection,))


def skipped_messages(db: sqlite3.Connection) -> list[SkippedMessage]:
    """The skipped messages, in stream order, one entry per message."""
    rows = db.execute("SELECT seq, subject, projection, reason FROM skipped_messages ORDER BY seq").fetchall()
    grouped: dict[int, tuple[str, set[str], set[str]]] = {}
    for seq, subject, projection, reason in rows:
        _, names, reasons = grouped.setdefault(seq, (subject, set(), set()))
        names.add(projection)
        reasons.add(reason)
    return [SkippedMessage(seq, subject, tuple(sorted(reasons)), tuple(sorted(names)))
            for seq, (subject, names, reasons) in grouped.items()]
