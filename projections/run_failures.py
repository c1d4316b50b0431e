"""Failed agent runs an operator should see: every ``RunAbandoned`` (the queue gave up on a group's messages
after its retries) and every message or task run that ended ``failed`` or ``timed_out``. Shown by
``nanoclaw failures`` and counted by ``nanoclaw status``; the projections service also logs each abandon at
error level (services/projector/abandoned.py)."""

from __future__ import annotations

import sqlite3

from projections.base import EventRecord, Projection


class RunFailures(Projection):
    """Table ``run_failures``: one row per failure, keyed by the event's stream position (``seq``, ``idx``):
    ``what`` is ``abandoned``, ``failed`` or ``timed_out``; ``detail`` the queue's reason or the run's error;
    ``attempts`` the failed attempts in a row (abandons only)."""

    name = "run_failures"
    version = 1
    tables = {"run_failures": """CREATE TABLE IF NOT EXISTS run_failures (
        seq INTEGER NOT NULL, idx INTEGER NOT NULL, at TEXT NOT NULL, what TEXT NOT NULL, run_id TEXT NOT NULL,
        chat_jid TEXT NOT NULL, group_folder TEXT NOT NULL, attempts INTEGER, detail TEXT NOT NULL,
        correlation_id TEXT, PRIMARY KEY (seq, idx))"""}
    event_types = frozenset({"RunAbandoned", "AgentRunFinished"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type == "RunAbandoned":
            what, attempts, detail = "abandoned", d.get("attempts"), d.get("reason", "")
        elif d.get("status") in ("failed", "timed_out"):
            what, attempts, detail = d["status"], None, d.get("error") or ""
        else:
            return
        db.execute("INSERT OR REPLACE INTO run_failures VALUES (?,?,?,?,?,?,?,?,?,?)",
                   (record.seq, record.index, record.event["time"], what, d["run_id"], d["chat_jid"], d["group_folder"],
                    attempts, detail, record.event.get("correlationid")))


def recent_failures(db: sqlite3.Connection, *, limit: int = 20, abandoned_only: bool = False) -> list[dict]:
    """The newest failures first, as dicts of the table's columns."""
    where = "WHERE what = 'abandoned'" if abandoned_only else ""
    cursor = db.execute(f"SELECT * FROM run_failures {where} ORDER BY seq DESC, idx DESC LIMIT ?", (limit,))
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def failure_counts(db: sqlite3.Connection) -> dict[str, int]:
    """``what`` → number of rows."""
    return dict(db.execute("SELECT what, COUNT(*) FROM run_failures GROUP BY what").fetchall())
