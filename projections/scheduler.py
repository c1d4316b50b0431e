"""Scheduler read models: ``scheduled_tasks`` and ``task_run_logs``, the tables of NanoClaw v1
(nanoclaw-behaviour §15) plus the task's time zone, catch-up policy, creator and run in flight.

A cancelled task's rows are deleted, as v1 ``deleteTask`` deletes the task and its run logs; the event log
keeps both for audits.
"""

from __future__ import annotations

import sqlite3

from projections.base import EventRecord, Projection

_UPDATABLE = ("prompt", "script", "schedule_type", "schedule_value", "timezone", "context_mode", "catch_up")


class ScheduledTasks(Projection):
    name = "scheduled_tasks"
    version = 1
    tables = {"scheduled_tasks": """CREATE TABLE IF NOT EXISTS scheduled_tasks (
        id TEXT PRIMARY KEY, group_folder TEXT NOT NULL, chat_jid TEXT NOT NULL, prompt TEXT NOT NULL,
        schedule_type TEXT NOT NULL, schedule_value TEXT NOT NULL, next_run TEXT, last_run TEXT, last_result TEXT,
        status TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL, context_mode TEXT NOT NULL, script TEXT,
        timezone TEXT NOT NULL, catch_up TEXT NOT NULL, created_by TEXT NOT NULL, running_run_id TEXT);
        CREATE INDEX IF NOT EXISTS idx_next_run ON scheduled_tasks(next_run);
        CREATE INDEX IF NOT EXISTS idx_status ON scheduled_tasks(status)"""}
    event_types = frozenset({"TaskCreated", "TaskUpdated", "TaskPaused", "TaskResumed", "TaskCancelled",
                             "TaskRunStarted", "TaskRunsSkipped", "TaskRunFinished", "TaskCompleted"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d, kind, task = record.data, record.type, record.data["task_id"]
        if kind == "TaskCreated":
            db.execute("INSERT OR REPLACE INTO scheduled_tasks (id, group_folder, chat_jid, prompt, schedule_type, "
                       "schedule_value, next_run, status, created_at, context_mode, script, timezone, catch_up, "
                       "created_by) VALUES (?,?,?,?,?,?,?,'active',?,?,?,?,?,?)",
                       (task, d["group_folder"], d["chat_jid"], d["prompt"], d["schedule_type"], d["schedule_value"],
                        d["next_run"], d["created_at"], d["context_mode"], d["script"], d["timezone"], d["catch_up"],
                        d["created_by"]))
        elif kind == "TaskUpdated":
            changed = {k: d[k] for k in _UPDATABLE if d.get(k) is not None}
            if d.get("remove_script"):
                changed["script"] = None
            changed["next_run"] = d["next_run"]
            db.execute(f"UPDATE scheduled_tasks SET {', '.join(f'{k} = ?' for k in changed)} WHERE id = ?",
                       (*changed.values(), task))
        elif kind == "TaskPaused":
            db.execute("UPDATE scheduled_tasks SET status = 'paused', last_result = COALESCE(?, last_result) "
                       "WHERE id = ?", (f"Error: {d['error']}" if d.get("error") else None, task))
        elif kind == "TaskResumed":
            db.execute("UPDATE scheduled_tasks SET status = 'active', next_run = ? WHERE id = ?", (d["next_run"], task))
        elif kind == "TaskCancelled":
            db.execute("DELETE FROM scheduled_tasks WHERE id = ?", (task,))
        elif kind == "TaskRunStarted":
            db.execute("UPDATE scheduled_tasks SET running_run_id = ?, next_run = ? WHERE id = ?",
                       (d["run_id"], d["next_run"], task))
        elif kind == "TaskRunsSkipped":
            db.execute("UPDATE scheduled_tasks SET next_run = ? WHERE id = ?", (d["next_run"], task))
        elif kind == "TaskRunFinished":
            db.execute("UPDATE scheduled_tasks SET running_run_id = NULL, last_run = ?, last_result = ? WHERE id = ?",
                       (d["run_at"], d["last_result"], task))
        else:  # TaskCompleted
            db.execute("UPDATE scheduled_tasks SET status = 'completed', next_run = NULL WHERE id = ?", (task,))


class TaskRunLogs(Projection):
    """One row per finished task run (v1 ``task_run_logs``), plus the run id."""

    name = "task_run_logs"
    version = 1
    tables = {"task_run_logs": """CREATE TABLE IF NOT EXISTS task_run_logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, run_at TEXT NOT NULL,
        duration_ms INTEGER NOT NULL, status TEXT NOT NULL, result TEXT, error TEXT, run_id TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS idx_task_run_logs ON task_run_logs(task_id, run_at)"""}
    event_types = frozenset({"TaskRunFinished", "TaskCancelled"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type == "TaskCancelled":
            db.execute("DELETE FROM task_run_logs WHERE task_id = ?", (d["task_id"],))
        else:
            db.execute("INSERT INTO task_run_logs (task_id, run_at, duration_ms, status, result, error, run_id) "
                       "VALUES (?,?,?,?,?,?,?)", (d["task_id"], d["run_at"], d["duration_ms"], d["status"],
                                                  d["result"], d["error"], d["run_id"]))
