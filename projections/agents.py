"""Agent read models: ``sessions`` (the Claude session each group resumes, as v1's ``sessions`` table) and
``run_dispatches`` (runs the queue dispatched, with the spec the runner needs to start or recover them)."""

from __future__ import annotations

import json
import sqlite3

from projections.base import EventRecord, Projection


class Sessions(Projection):
    """``group_folder → session_id``: the newest session a run of the group reported; cleared by
    ``AgentSessionReset`` (v1 deletes a session the CLI can no longer resume)."""

    name = "sessions"
    version = 1
    tables = {"sessions": """CREATE TABLE IF NOT EXISTS sessions (
        group_folder TEXT PRIMARY KEY, session_id TEXT NOT NULL, run_id TEXT, updated_at TEXT NOT NULL)"""}
    event_types = frozenset({"AgentOutputProduced", "AgentSessionReset"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type == "AgentSessionReset":
            db.execute("DELETE FROM sessions WHERE group_folder = ? AND session_id = ?", (d["group_folder"], d["session_id"]))
        elif d.get("session_id"):
            db.execute("INSERT OR REPLACE INTO sessions VALUES (?,?,?,?)",
                       (d["group_folder"], d["session_id"], d["run_id"], record.event["time"]))


class RunDispatches(Projection):
    """One row per dispatched run: its spec (JSON of ``RunDispatched``) and how far it got (``dispatched`` →
    ``started`` → ``finished``), so a restarted runner knows what was in flight."""

    name = "run_dispatches"
    version = 1
    tables = {"run_dispatches": """CREATE TABLE IF NOT EXISTS run_dispatches (
        run_id TEXT PRIMARY KEY, chat_jid TEXT NOT NULL, group_folder TEXT NOT NULL, kind TEXT NOT NULL,
        spec TEXT NOT NULL, state TEXT NOT NULL, outputs INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0,
        dispatched_at TEXT NOT NULL)"""}
    event_types = frozenset({"RunDispatched", "AgentRunStarted", "AgentOutputProduced", "AgentRunFinished"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type == "RunDispatched":
            db.execute("INSERT OR IGNORE INTO run_dispatches(run_id, chat_jid, group_folder, kind, spec, state, dispatched_at) "
                       "VALUES (?,?,?,?,?,'dispatched',?)", (d["run_id"], d["chat_jid"], d["group_folder"],
                                                             d.get("kind", "message"), json.dumps(d, sort_keys=True),
                                                             record.event["time"]))
        elif record.type == "AgentRunStarted":
            db.execute("UPDATE run_dispatches SET state = 'started' WHERE run_id = ? AND state = 'dispatched'", (d["run_id"],))
        elif record.type == "AgentOutputProduced":
            db.execute("UPDATE run_dispatches SET outputs = outputs + 1, delivered = MAX(delivered, ?) WHERE run_id = ?",
                       (int(bool(d.get("text"))), d["run_id"]))
        else:
            db.execute("UPDATE run_dispatches SET state = 'finished' WHERE run_id = ?", (d["run_id"],))
