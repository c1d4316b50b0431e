"""Reads of the scheduler's private read model (``scheduled_tasks``, ``task_run_logs``, ``registered_groups``)."""

from __future__ import annotations

from typing import Any, Sequence

from projections.chat import GroupRef, Queryable

__all__ = ["GroupRef", "ReadModel", "due_task_ids", "next_wake", "tasks"]

ReadModel = Queryable


def due_task_ids(rm: ReadModel, now_iso: str) -> list[str]:
    """Active tasks without a run in flight whose ``next_run`` is at or before ``now_iso``, earliest first."""
    return [r["id"] for r in rm.query(
        "SELECT id FROM scheduled_tasks WHERE status = 'active' AND running_run_id IS NULL AND next_run IS NOT NULL "
        "AND next_run <= ? ORDER BY next_run", (now_iso,))]


def next_wake(rm: ReadModel, exclude: Sequence[str] = ()) -> str | None:
    """The earliest ``next_run`` of an active task without a run in flight (ISO UTC), or None."""
    marks = ",".join("?" * len(exclude))
    where = f" AND id NOT IN ({marks})" if exclude else ""
    rows = rm.query("SELECT MIN(next_run) AS at FROM scheduled_tasks WHERE status = 'active' AND running_run_id IS "
                    f"NULL AND next_run IS NOT NULL{where}", tuple(exclude))
    return rows[0]["at"] if rows else None


def tasks(rm: ReadModel, folder: str | None = None) -> list[Any]:
    """Task rows, all groups' or one folder's, by next run."""
    if folder is None:
        return rm.query("SELECT * FROM scheduled_tasks ORDER BY next_run IS NULL, next_run, id")
    return rm.query("SELECT * FROM scheduled_tasks WHERE group_folder = ? ORDER BY next_run IS NULL, next_run, id",
                    (folder,))
