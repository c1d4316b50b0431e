"""Governance read models (the seed's tables): ``products``; ``gov_tasks`` (each task's current state and
version), ``gov_activities`` (the audit trail: every creation, assignment, transition, approval and dispatch
with actor, reason and evidence), ``gov_approvals`` (one row per task and gate) and ``gov_dispatches``.

Lists (gates, evidence) are stored as JSON arrays. ``version`` is the task aggregate's version after its last
event: the ``expected_version`` a command must carry.
"""

from __future__ import annotations

import json
import sqlite3

from projections.base import EventRecord, Projection


def _json(value) -> str:
    return json.dumps(value if value is not None else [], sort_keys=True)


class GovProducts(Projection):
    name = "gov_products"
    version = 1
    tables = {"products": """CREATE TABLE IF NOT EXISTS products (
        product_id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, risk_level TEXT NOT NULL,
        created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"""}
    event_types = frozenset({"GovProductRegistered", "GovProductUpdated"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type == "GovProductRegistered":
            db.execute("INSERT OR REPLACE INTO products VALUES (?,?,?,?,?,?,?)",
                       (d["product_id"], d["name"], d["status"], d["risk_level"], d["actor"], d["at"], d["at"]))
            return
        db.execute("UPDATE products SET name = COALESCE(?, name), status = COALESCE(?, status), "
                   "risk_level = COALESCE(?, risk_level), updated_at = ? WHERE product_id = ?",
                   (d.get("name"), d.get("status"), d.get("risk_level"), d["at"], d["product_id"]))


class GovTasks(Projection):
    name = "gov_tasks"
    version = 1
    tables = {
        "gov_tasks": """CREATE TABLE IF NOT EXISTS gov_tasks (
            task_id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT NOT NULL, product_id TEXT,
            gates TEXT NOT NULL, assignee TEXT, state TEXT NOT NULL, resume_state TEXT, review_summary TEXT,
            version INTEGER NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS idx_gov_tasks_state ON gov_tasks(state, assignee)""",
        "gov_activities": """CREATE TABLE IF NOT EXISTS gov_activities (
            seq INTEGER NOT NULL, idx INTEGER NOT NULL, task_id TEXT NOT NULL, version INTEGER NOT NULL,
            kind TEXT NOT NULL, actor TEXT NOT NULL, from_state TEXT, to_state TEXT, gate TEXT, reason TEXT NOT NULL,
            evidence TEXT NOT NULL, detail TEXT, at TEXT NOT NULL, PRIMARY KEY (seq, idx));
            CREATE INDEX IF NOT EXISTS idx_gov_activities_task ON gov_activities(task_id, version)""",
        "gov_approvals": """CREATE TABLE IF NOT EXISTS gov_approvals (
            task_id TEXT NOT NULL, gate TEXT NOT NULL, approver TEXT NOT NULL, reason TEXT NOT NULL,
            evidence TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (task_id, gate))""",
        "gov_dispatches": """CREATE TABLE IF NOT EXISTS gov_dispatches (
            dispatch_key TEXT PRIMARY KEY, task_id TEXT NOT NULL, purpose TEXT NOT NULL, gate TEXT,
            group_folder TEXT NOT NULL, chat_jid TEXT NOT NULL, at TEXT NOT NULL)""",
    }
    event_types = frozenset({"GovTaskCreated", "GovTaskAssigned", "GovTaskTransitioned", "GovApprovalGranted",
                             "GovTaskDispatched"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d, version = record.data, record.event["aggregateversion"]
        if record.type == "GovTaskCreated":
            db.execute("INSERT OR REPLACE INTO gov_tasks VALUES (?,?,?,?,?,?,'INBOX',NULL,NULL,?,?,?,?)",
                       (d["task_id"], d["title"], d.get("description", ""), d.get("product_id"), _json(d.get("gates")),
                        d.get("assignee"), version, d["actor"], d["at"], d["at"]))
            self._activity(db, record, "created", d.get("reason", ""), to_state="INBOX",
                           detail=json.dumps({"title": d["title"], "gates": d.get("gates", []),
                                              "assignee": d.get("assignee")}, sort_keys=True))
            return
        db.execute("UPDATE gov_tasks SET version = ?, updated_at = ? WHERE task_id = ?", (version, d["at"], d["task_id"]))
        if record.type == "GovTaskAssigned":
            db.execute("UPDATE gov_tasks SET assignee = ? WHERE task_id = ?", (d["assignee"], d["task_id"]))
            self._activity(db, record, "assigned", d.get("reason", ""),
                           detail=json.dumps({"assignee": d["assignee"], "previous": d.get("previous_assignee")},
                                             sort_keys=True))
        elif record.type == "GovTaskTransitioned":
            db.execute("UPDATE gov_tasks SET state = ?, resume_state = ?, "
                       "review_summary = COALESCE(?, review_summary) WHERE task_id = ?",
                       (d["to_state"], d.get("resume_state"), d.get("review_summary"), d["task_id"]))
            self._activity(db, record, "transition", d.get("reason", ""), from_state=d["from_state"],
                           to_state=d["to_state"], evidence=d.get("evidence"),
                           detail=json.dumps({"review_summary": d["review_summary"]}) if d.get("review_summary") else None)
        elif record.type == "GovApprovalGranted":
            db.execute("INSERT OR REPLACE INTO gov_approvals VALUES (?,?,?,?,?,?)",
                       (d["task_id"], d["gate"], d["approver"], d.get("reason", ""), _json(d.get("evidence")), d["at"]))
            self._activity(db, record, "approval", d.get("reason", ""), gate=d["gate"], evidence=d.get("evidence"),
                           actor=d["approver"])
        else:
            db.execute("INSERT OR IGNORE INTO gov_dispatches VALUES (?,?,?,?,?,?,?)",
                       (d["dispatch_key"], d["task_id"], d["purpose"], d.get("gate"), d["group_folder"], d["chat_jid"],
                        d["at"]))
            self._activity(db, record, "dispatch", f"{d['purpose']} run for {d['group_folder']}", gate=d.get("gate"),
                           actor="governance", detail=json.dumps({"dispatch_key": d["dispatch_key"]}))

    @staticmethod
    def _activity(db: sqlite3.Connection, record: EventRecord, kind: str, reason: str, *, from_state: str | None = None,
                  to_state: str | None = None, gate: str | None = None, evidence=None, actor: str | None = None,
                  detail: str | None = None) -> None:
        d = record.data
        db.execute("INSERT OR REPLACE INTO gov_activities VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (record.seq, record.index, d["task_id"], record.event["aggregateversion"], kind,
                    actor or d["actor"], from_state, to_state, gate, reason, _json(evidence), detail, d["at"]))


def governance_projections() -> list[Projection]:
    return [GovProducts(), GovTasks()]
