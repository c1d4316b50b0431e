"""SQLite plumbing shared by projections: connection settings and the tracking table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS projection_tracking (
  name TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  last_seq INTEGER NOT NULL
)"""


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
