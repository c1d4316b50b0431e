"""Queue statistics from the queue's and the runner's events: what waits per group, how long a turn waited for
its run to start, how long runs took, retries and abandons. Read by ``/metrics`` (services/projector/
queue_metrics.py) and ``nanoclaw status``.

Event flow (docs/agent-runs.md): ``AgentTurnRequested`` (router) → ``RunQueued`` (queue: the request waits)
→ ``RunDispatched`` (a slot: ``turn_ids``/``queued_run_ids`` it coalesces) → ``AgentRunStarted`` (runner) →
``AgentRunFinished`` → ``RunReleased``; ``RunRetryScheduled`` / ``RunAbandoned`` when message runs fail.

Tolerant by design: only the fields used here are read, with defaults, so queue events that gain fields or
new queue event types (not in :attr:`QueueStats.event_types`, so never delivered here) leave it working. Every
time is the events' own ``time`` (deterministic: ``audit verify`` rebuilds identical tables).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from projections.base import EventRecord, Projection

WAIT_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Histogram bounds (s) for the wait from turn request to run start."""
DURATION_BUCKETS_S = (1, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)
"""Histogram bounds (s) for run durations."""


def _ms_between(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    return max(0, round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000))


class QueueStats(Projection):
    """Tables: ``queue_turns`` (one per router turn: requested/started time, ``wait_ms``), ``queue_waiting``
    (runs queued and not yet dispatched: the depth), ``queue_runs`` (one per dispatched run: dispatched/started/
    finished, ``status``, ``duration_ms``, ``attempt``), ``queue_group_counts`` (every group seen, with its
    ``retries`` and ``abandons``), ``queue_latency`` (the ``wait`` and ``duration`` histograms: count, sum in
    ms, cumulative bucket counts as a JSON list in the order of :data:`WAIT_BUCKETS_S` /
    :data:`DURATION_BUCKETS_S`)."""

    name = "queue_stats"
    version = 1
    tables = {
        "queue_turns": """CREATE TABLE IF NOT EXISTS queue_turns (
            turn_id TEXT PRIMARY KEY, chat_jid TEXT NOT NULL, group_folder TEXT NOT NULL, requested_at TEXT NOT NULL,
            run_id TEXT, started_at TEXT, wait_ms INTEGER);
            CREATE INDEX IF NOT EXISTS queue_turns_run ON queue_turns(run_id)""",
        "queue_waiting": """CREATE TABLE IF NOT EXISTS queue_waiting (
            run_id TEXT PRIMARY KEY, chat_jid TEXT NOT NULL, group_folder TEXT NOT NULL, kind TEXT NOT NULL,
            queued_at TEXT NOT NULL)""",
        "queue_runs": """CREATE TABLE IF NOT EXISTS queue_runs (
            run_id TEXT PRIMARY KEY, chat_jid TEXT NOT NULL, group_folder TEXT NOT NULL, kind TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0, dispatched_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
            status TEXT NOT NULL, duration_ms INTEGER);
            CREATE INDEX IF NOT EXISTS queue_runs_open ON queue_runs(group_folder) WHERE finished_at IS NULL""",
        "queue_group_counts": """CREATE TABLE IF NOT EXISTS queue_group_counts (
            group_folder TEXT PRIMARY KEY, retries INTEGER NOT NULL DEFAULT 0, abandons INTEGER NOT NULL DEFAULT 0)""",
        # Histograms kept as they go, so a scrape reads one row per metric however many runs there were
        # (aggregating the rows at each scrape took ≈150 ms for 100k runs on 2 cores).
        "queue_latency": """CREATE TABLE IF NOT EXISTS queue_latency (
            metric TEXT PRIMARY KEY, count INTEGER NOT NULL, sum_ms INTEGER NOT NULL, buckets TEXT NOT NULL)""",
    }
    event_types = frozenset({"AgentTurnRequested", "RunQueued", "RunDispatched", "AgentRunStarted", "AgentRunFinished",
                             "RunReleased", "RunRetryScheduled", "RunAbandoned"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d, at = record.data, record.event["time"]
        kind = record.type
        if "group_folder" in d:
            db.execute("INSERT OR IGNORE INTO queue_group_counts(group_folder) VALUES (?)", (d["group_folder"],))
        if kind == "AgentTurnRequested":
            db.execute("INSERT OR IGNORE INTO queue_turns(turn_id, chat_jid, group_folder, requested_at) VALUES (?,?,?,?)",
                       (d["turn_id"], d["chat_jid"], d["group_folder"], at))
        elif kind == "RunQueued":
            db.execute("INSERT OR IGNORE INTO queue_waiting VALUES (?,?,?,?,?)",
                       (d["run_id"], d["chat_jid"], d["group_folder"], d.get("kind", "message"), at))
        elif kind == "RunDispatched":
            merged = {d["run_id"], *d.get("queued_run_ids", [])}
            db.executemany("DELETE FROM queue_waiting WHERE run_id = ?", [(r,) for r in merged])
            db.execute("INSERT OR IGNORE INTO queue_runs(run_id, chat_jid, group_folder, kind, attempt, dispatched_at, status) "
                       "VALUES (?,?,?,?,?,?,'dispatched')",
                       (d["run_id"], d["chat_jid"], d["group_folder"], d.get("kind", "message"), d.get("attempt", 0), at))
            db.executemany("UPDATE queue_turns SET run_id = ? WHERE turn_id = ? AND run_id IS NULL",
                           [(d["run_id"], t) for t in d.get("turn_ids", [])])
        elif kind == "AgentRunStarted":
            db.execute("UPDATE queue_runs SET started_at = ?, status = 'running' WHERE run_id = ? AND started_at IS NULL",
                       (at, d["run_id"]))
            for turn_id, requested_at in db.execute("SELECT turn_id, requested_at FROM queue_turns WHERE run_id = ? "
                                                    "AND started_at IS NULL", (d["run_id"],)).fetchall():
                wait = _ms_between(requested_at, at)
                db.execute("UPDATE queue_turns SET started_at = ?, wait_ms = ? WHERE turn_id = ?", (at, wait, turn_id))
                _observe(db, "wait", wait, WAIT_BUCKETS_S)
        elif kind == "AgentRunFinished":
            row = db.execute("SELECT started_at, finished_at FROM queue_runs WHERE run_id = ?", (d["run_id"],)).fetchone()
            if row is None or row[1] is not None:
                return  # a run the queue did not dispatch (before this projection), or finished twice
            duration = d.get("duration_ms")
            if duration is None:
                duration = _ms_between(row[0], at)
            db.execute("UPDATE queue_runs SET finished_at = ?, status = ?, duration_ms = ? WHERE run_id = ?",
                       (at, d.get("status", "finished"), duration, d["run_id"]))
            _observe(db, "duration", duration, DURATION_BUCKETS_S)
        elif kind == "RunReleased":
            # A run released without a finish (it never started: the sandbox could not be created).
            db.execute("UPDATE queue_runs SET finished_at = COALESCE(finished_at, ?), status = CASE WHEN finished_at IS NULL "
                       "THEN ? ELSE status END WHERE run_id = ?", (at, d.get("outcome", "released"), d["run_id"]))
        elif kind in ("RunRetryScheduled", "RunAbandoned"):
            column = "retries" if kind == "RunRetryScheduled" else "abandons"
            db.execute(f"INSERT INTO queue_group_counts(group_folder, {column}) VALUES (?, 1) "
                       f"ON CONFLICT(group_folder) DO UPDATE SET {column} = {column} + 1", (d["group_folder"],))


def _observe(db: sqlite3.Connection, metric: str, ms: int | None, bounds: tuple[float, ...]) -> None:
    if ms is None:
        return
    row = db.execute("SELECT count, sum_ms, buckets FROM queue_latency WHERE metric = ?", (metric,)).fetchone()
    count, total, buckets = (row[0], row[1], json.loads(row[2])) if row else (0, 0, [0] * len(bounds))
    buckets = [n + (ms <= bound * 1000) for n, bound in zip(buckets, bounds)]
    db.execute("INSERT OR REPLACE INTO queue_latency VALUES (?,?,?,?)", (metric, count + 1, total + ms, json.dumps(buckets)))


@dataclass(frozen=True)
class Histogram:
    """Observations in seconds: ``buckets`` maps each upper bound to the count at or below it (cumulative),
    plus the total ``count`` and ``sum_s``."""

    buckets: dict[float, int]
    count: int
    sum_s: float

    def mean_s(self) -> float | None:
        return self.sum_s / self.count if self.count else None


@dataclass(frozen=True)
class GroupStats:
    group_folder: str
    waiting: int = 0
    running: int = 0
    retries: int = 0
    abandons: int = 0


@dataclass(frozen=True)
class QueueSnapshot:
    """What ``/metrics`` and ``nanoclaw status`` show: per-group rows (sorted by folder), the waits from turn
    request to run start, the durations of finished runs, and the totals."""

    groups: list[GroupStats] = field(default_factory=list)
    wait: Histogram = Histogram({}, 0, 0.0)
    duration: Histogram = Histogram({}, 0, 0.0)

    @property
    def depth(self) -> int:
        return sum(g.waiting for g in self.groups)

    @property
    def running(self) -> int:
        return sum(g.running for g in self.groups)

    @property
    def retries(self) -> int:
        return sum(g.retries for g in self.groups)

    @property
    def abandons(self) -> int:
        return sum(g.abandons for g in self.groups)


def _histogram(db: sqlite3.Connection, metric: str, bounds: tuple[float, ...]) -> Histogram:
    row = db.execute("SELECT count, sum_ms, buckets FROM queue_latency WHERE metric = ?", (metric,)).fetchone()
    if row is None:
        return Histogram({b: 0 for b in bounds}, 0, 0.0)
    return Histogram(dict(zip(bounds, json.loads(row[2]))), row[0], row[1] / 1000)


def snapshot(db: sqlite3.Connection) -> QueueSnapshot:
    """The current statistics from the tables of :class:`QueueStats` (which must exist).

    Raises:
        sqlite3.Error: the tables cannot be read.
    """
    groups: dict[str, dict[str, int]] = {}
    for folder, n in db.execute("SELECT group_folder, COUNT(*) FROM queue_waiting GROUP BY group_folder"):
        groups.setdefault(folder, {})["waiting"] = n
    for folder, n in db.execute("SELECT group_folder, COUNT(*) FROM queue_runs WHERE finished_at IS NULL GROUP BY group_folder"):
        groups.setdefault(folder, {})["running"] = n
    for folder, retries, abandons in db.execute("SELECT group_folder, retries, abandons FROM queue_group_counts"):
        groups.setdefault(folder, {}).update(retries=retries, abandons=abandons)
    return QueueSnapshot(
        groups=[GroupStats(folder, **values) for folder, values in sorted(groups.items())],
        wait=_histogram(db, "wait", WAIT_BUCKETS_S),
        duration=_histogram(db, "duration", DURATION_BUCKETS_S))
