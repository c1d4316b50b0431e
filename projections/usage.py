"""Model usage read model (projection ``model_usage``): what each group's agent runs spent through the model proxy.

Tables:
- ``model_usage``: one row per proxied Messages API call (``ModelUsageRecorded``), keyed by event id.
- ``model_usage_totals``: per group folder: calls, tokens, ``cost_usd`` (sum of the calls' costs, USD) and
  ``refused`` (calls the proxy refused because the budget was spent, ``ModelRequestRefused``).

The broker keeps its own copy to enforce budgets; the catalog's copy serves reports.
"""

from __future__ import annotations

import sqlite3

from projections.base import EventRecord, Projection

_TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class UsageProjection(Projection):
    name = "model_usage"
    version = 1
    tables = {
        "model_usage": """CREATE TABLE IF NOT EXISTS model_usage (
            event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, time TEXT NOT NULL, run_id TEXT NOT NULL,
            group_folder TEXT NOT NULL, model TEXT NOT NULL, status INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL, cache_creation_input_tokens INTEGER NOT NULL,
            cache_read_input_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS idx_model_usage_group ON model_usage(group_folder, seq)""",
        "model_usage_totals": """CREATE TABLE IF NOT EXISTS model_usage_totals (
            group_folder TEXT PRIMARY KEY, calls INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0, cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_input_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,
            refused INTEGER NOT NULL DEFAULT 0)""",
    }
    event_types = frozenset({"ModelUsageRecorded", "ModelRequestRefused"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        folder = d["group_folder"]
        db.execute("INSERT OR IGNORE INTO model_usage_totals(group_folder) VALUES (?)", (folder,))
        if record.type == "ModelRequestRefused":
            db.execute("UPDATE model_usage_totals SET refused = refused + 1 WHERE group_folder = ?", (folder,))
            return
        tokens = [int(d.get(t, 0)) for t in _TOKENS]
        cost = float(d.get("cost_usd", 0.0))
        inserted = db.execute("INSERT OR IGNORE INTO model_usage VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                              (record.event["id"], record.seq, record.event["time"], d["run_id"], folder, d["model"],
                               d["status"], *tokens, cost)).rowcount
        if inserted:  # the same event applied twice must not count twice
            db.execute("UPDATE model_usage_totals SET calls = calls + 1, input_tokens = input_tokens + ?,"
                       " output_tokens = output_tokens + ?, cache_creation_input_tokens = cache_creation_input_tokens + ?,"
                       " cache_read_input_tokens = cache_read_input_tokens + ?, cost_usd = cost_usd + ? WHERE group_folder = ?",
                       (*tokens, cost, folder))


def spent_usd(db: sqlite3.Connection, group_folder: str) -> float:
    """The group's recorded spend in USD (0.0 if it never made a call)."""
    row = db.execute("SELECT cost_usd FROM model_usage_totals WHERE group_folder = ?", (group_folder,)).fetchone()
    return float(row[0]) if row else 0.0
