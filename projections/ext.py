"""External-access read models (docs/external-access.md).

Projection ``ext_capabilities``:
- ``ext_capabilities``: one row per grant (key: ``group_folder``, ``provider``, ``grant_id``), ``level`` (1–3),
  ``product`` (NULL: every product), ``status`` (``proposed`` | ``active`` | ``revoked``), ``proposed_by``,
  ``approvers`` (comma-separated), ``reason``, ``proposed_at``, ``granted_at``, ``expires_at`` (NULL: never),
  ``revoked_at``, ``revoked_by``. Whether an active grant has expired depends on the reader's clock, so it is
  not a stored status: compare ``expires_at`` (ISO-8601 UTC strings order as times).
- ``ext_denies``: the denies in force: ``group_folder``, ``provider``, ``product`` ('' for every product),
  ``denied_by``, ``reason``, ``denied_at``.

Projection ``ext_calls``: the audit trail of calls, one row per decision (event id): ``decision`` ``allowed``
(from ``ExtCallStarted``, completed by ``ExtCallFinished``: ``status``, ``outcome``, ``duration_ms``,
``finished_at``) or the refusal's decision; ``params_hash`` is the HMAC of the parameters, never the
parameters. Times are the broker's clock (``at``).
"""

from __future__ import annotations

import sqlite3

from projections.base import EventRecord, Projection


class ExtCapabilities(Projection):
    name = "ext_capabilities"
    version = 1
    tables = {
        "ext_capabilities": """CREATE TABLE IF NOT EXISTS ext_capabilities (
            group_folder TEXT NOT NULL, provider TEXT NOT NULL, grant_id TEXT NOT NULL, level INTEGER NOT NULL,
            product TEXT, status TEXT NOT NULL, proposed_by TEXT, approvers TEXT NOT NULL, reason TEXT NOT NULL,
            proposed_at TEXT, granted_at TEXT, expires_at TEXT, revoked_at TEXT, revoked_by TEXT,
            PRIMARY KEY (group_folder, provider, grant_id))""",
        "ext_denies": """CREATE TABLE IF NOT EXISTS ext_denies (
            group_folder TEXT NOT NULL, provider TEXT NOT NULL, product TEXT NOT NULL, denied_by TEXT NOT NULL,
            reason TEXT NOT NULL, denied_at TEXT NOT NULL, PRIMARY KEY (group_folder, provider, product))""",
    }
    event_types = frozenset({"ExtCapabilityProposed", "ExtCapabilityGranted", "ExtCapabilityRevoked",
                             "ExtCapabilityDenied", "ExtCapabilityDenyLifted"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d, kind = record.data, record.type
        if kind == "ExtCapabilityProposed":
            db.execute("INSERT OR REPLACE INTO ext_capabilities(grant_id, group_folder, provider, level, product, status,"
                       " proposed_by, approvers, reason, proposed_at) VALUES (?,?,?,?,?,'proposed',?,?,?,?)",
                       (d["grant_id"], d["group_folder"], d["provider"], d["level"], d.get("product"), d["proposed_by"],
                        d["proposed_by"], d.get("reason", ""), d["proposed_at"]))
        elif kind == "ExtCapabilityGranted":
            approvers = ",".join(d["approvers"])
            if not db.execute("UPDATE ext_capabilities SET status = 'active', approvers = ?, granted_at = ?,"
                              " expires_at = ? WHERE group_folder = ? AND provider = ? AND grant_id = ?",
                              (approvers, d["granted_at"], d.get("expires_at"), *_grant_key(d))).rowcount:
                db.execute("INSERT INTO ext_capabilities(grant_id, group_folder, provider, level, product, status,"
                           " proposed_by, approvers, reason, granted_at, expires_at) VALUES (?,?,?,?,?,'active',?,?,?,?,?)",
                           (d["grant_id"], d["group_folder"], d["provider"], d["level"], d.get("product"),
                            d["approvers"][0], approvers, d.get("reason", ""), d["granted_at"], d.get("expires_at")))
        elif kind == "ExtCapabilityRevoked":
            db.execute("UPDATE ext_capabilities SET status = 'revoked', revoked_at = ?, revoked_by = ?"
                       " WHERE group_folder = ? AND provider = ? AND grant_id = ?",
                       (d["revoked_at"], d["revoked_by"], *_grant_key(d)))
        elif kind == "ExtCapabilityDenied":
            db.execute("INSERT OR REPLACE INTO ext_denies VALUES (?,?,?,?,?,?)",
                       (d["group_folder"], d["provider"], d.get("product") or "", d["denied_by"], d.get("reason", ""),
                        d["denied_at"]))
        elif kind == "ExtCapabilityDenyLifted":
            db.execute("DELETE FROM ext_denies WHERE group_folder = ? AND provider = ? AND product = ?",
                       (d["group_folder"], d["provider"], d.get("product") or ""))


def _grant_key(d: dict) -> tuple[str, str, str]:
    # Grant ids are unique within one group × provider aggregate only.
    return d["group_folder"], d["provider"], d["grant_id"]


class ExtCalls(Projection):
    name = "ext_calls"
    version = 1
    tables = {
        "ext_calls": """CREATE TABLE IF NOT EXISTS ext_calls (
            event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, group_folder TEXT NOT NULL,
            idempotency_key TEXT NOT NULL, provider TEXT NOT NULL, product TEXT, level INTEGER NOT NULL,
            level_held INTEGER, decision TEXT NOT NULL, method TEXT, host TEXT, params_hash TEXT NOT NULL,
            reason TEXT, status INTEGER, outcome TEXT, duration_ms INTEGER, at TEXT NOT NULL, finished_at TEXT);
            CREATE INDEX IF NOT EXISTS idx_ext_calls_group ON ext_calls(group_folder, seq);
            CREATE INDEX IF NOT EXISTS idx_ext_calls_key ON ext_calls(group_folder, idempotency_key)""",
    }
    event_types = frozenset({"ExtCallStarted", "ExtCallFinished", "ExtCallRefused"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d, kind = record.data, record.type
        if kind == "ExtCallStarted":
            db.execute("INSERT OR IGNORE INTO ext_calls(event_id, seq, group_folder, idempotency_key, provider, product,"
                       " level, decision, method, host, params_hash, at) VALUES (?,?,?,?,?,?,?,'allowed',?,?,?,?)",
                       (record.event["id"], record.seq, d["group_folder"], d["idempotency_key"], d["provider"],
                        d.get("product"), d["level"], d["method"], d["host"], d["params_hash"], d["started_at"]))
        elif kind == "ExtCallFinished":
            # A key is claimed once (its aggregate is created by ExtCallStarted), so this names one row.
            db.execute("UPDATE ext_calls SET status = ?, outcome = ?, duration_ms = ?, reason = ?, finished_at = ?"
                       " WHERE group_folder = ? AND idempotency_key = ? AND decision = 'allowed'",
                       (d["status"], d["outcome"], d["duration_ms"], d.get("error"), d["finished_at"],
                        d["group_folder"], d["idempotency_key"]))
        elif kind == "ExtCallRefused":
            db.execute("INSERT OR IGNORE INTO ext_calls(event_id, seq, group_folder, idempotency_key, provider, product,"
                       " level, level_held, decision, params_hash, reason, at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (record.event["id"], record.seq, d["group_folder"], d["idempotency_key"], d["provider"],
                        d.get("product"), d["level_required"], d["level_held"], d["decision"], d["params_hash"],
                        d["reason"], d["refused_at"]))


def ext_projections() -> list[Projection]:
    return [ExtCapabilities(), ExtCalls()]
