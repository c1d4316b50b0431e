"""``event_log``: one row per event of the log — the generic audit read model. ``idx`` is the event's
position within its commit (one stream message), so ``(seq, idx)`` names every event."""

from __future__ import annotations

import sqlite3

from projections.base import EventRecord, Projection


class EventLog(Projection):
    name = "event_log"
    version = 2
    tables = {
        "event_log": """
        CREATE TABLE IF NOT EXISTS event_log (
          seq INTEGER NOT NULL,
          idx INTEGER NOT NULL,
          event_id TEXT NOT NULL,
          time TEXT NOT NULL,
          type TEXT NOT NULL,
          subject TEXT NOT NULL,
          aggregate TEXT NOT NULL,
          version INTEGER NOT NULL,
          correlation_id TEXT,
          causation_id TEXT,
          PRIMARY KEY (seq, idx)
        )""",
    }

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        e = record.event
        agg = f'{e["aggregatecontext"]}.{e["aggregatetype"]}/{e["aggregateid"]}'
        idx = record.index
        db.execute(
            "INSERT OR REPLACE INTO event_log VALUES (?,?,?,?,?,?,?,?,?,?)",
            (record.seq, idx, e["id"], e["time"], e["eventtype"], record.subject, agg, e["aggregateversion"],
             e.get("correlationid"), e.get("causationid")),
        )
