"""Queries on the governance read model (``registered_groups`` plus the tables of
:mod:`projections.governance`), shared by the service's IPC tools and the CLI. Rows come back as plain dicts
with JSON columns decoded."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from projections.chat import Queryable as ReadModel


def _row(r: sqlite3.Row) -> dict[str, Any]:
    out = dict(r)
    for key in ("gates", "evidence"):
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    if isinstance(out.get("detail"), str):
        out["detail"] = json.loads(out["detail"])
    return out


def tasks(rm: ReadModel, *, state: str | None = None, assignee: str | None = None,
          product_id: str | None = None) -> list[dict[str, Any]]:
    """Tasks (oldest first), optionally filtered by state, assignee folder and product."""
    where, params = [], []
    for column, value in (("state", state), ("assignee", assignee), ("product_id", product_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = "SELECT * FROM gov_tasks" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at, task_id"
    return [_row(r) for r in rm.query(sql, params)]


def task(rm: ReadModel, task_id: str) -> dict[str, Any] | None:
    """One task with its ``activities`` (audit trail, in order), ``approvals`` and ``dispatches``."""
    rows = rm.query("SELECT * FROM gov_tasks WHERE task_id = ?", (task_id,))
    if not rows:
        return None
    out = _row(rows[0])
    out["activities"] = [_row(r) for r in rm.query(
        "SELECT version, kind, actor, from_state, to_state, gate, reason, evidence, detail, at FROM gov_activities "
        "WHERE task_id = ? ORDER BY seq, idx", (task_id,))]
    out["approvals"] = [_row(r) for r in rm.query(
        "SELECT gate, approver, reason, evidence, at FROM gov_approvals WHERE task_id = ? ORDER BY gate", (task_id,))]
    out["dispatches"] = [dict(r) for r in rm.query(
        "SELECT dispatch_key, purpose, gate, group_folder, at FROM gov_dispatches WHERE task_id = ? ORDER BY at, "
        "dispatch_key", (task_id,))]
    return out


def products(rm: ReadModel) -> list[dict[str, Any]]:
    return [dict(r) for r in rm.query("SELECT * FROM products ORDER BY product_id")]


def dispatch_candidates(rm: ReadModel) -> list[str]:
    """Ids of tasks the dispatcher may have to act on: READY with an assignee, or in REVIEW."""
    return [r["task_id"] for r in rm.query(
        "SELECT task_id FROM gov_tasks WHERE (state = 'READY' AND assignee IS NOT NULL) OR state = 'REVIEW' "
        "ORDER BY created_at, task_id")]
