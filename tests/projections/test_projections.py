"""Projections against a real nats-server: tracking in the same transaction, rebuild, verify."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from events.envelope import AggregateRef, new_commit
from projections.audit import AuditError, rebuild, table_checksum, verify
from projections.base import EventRecord, Projection
from projections.event_log import EventLog
from projections.runner import ProjectionError, ProjectionRunner
from projections.sqlite import open_db, skipped_messages, tracked
from tests.events.store_contract import CounterIncremented
from tests.support import eventually


async def fill(store, n: int, aggregates: int = 3, prefix: str = "c") -> None:
    seqs: dict[str, tuple[int, int]] = {}
    for i in range(n):
        key = f"{prefix}{i % aggregates}"
        seq, version = seqs.get(key, (0, 0))
        commit = new_commit(AggregateRef("test", "counter", key), [CounterIncremented(by=i)], version=version, source="test")
        seqs[key] = ((await store.append(commit, expected_seq=seq)).seq, version + 1)


class Totals(Projection):
    """Sum per counter; can be told to fail on one value (with ``failure``: SQLite's disk-full error by default,
    an infrastructure failure)."""

    name = "totals"
    version = 1
    tables = {"totals": "CREATE TABLE IF NOT EXISTS totals (id TEXT PRIMARY KEY, total INTEGER NOT NULL)"}
    event_types = frozenset({"CounterIncremented"})
    fail_on: int | None = None
    failure: Exception = sqlite3.OperationalError("database or disk is full")

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        by = record.data["by"]
        if by == self.fail_on:
            raise self.failure
        db.execute("INSERT INTO totals VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET total = total + excluded.total",
                   (record.event["aggregateid"], by))


def totals(db) -> dict[str, int]:
    return dict(db.execute("SELECT id, total FROM totals"))


async def test_event_log_gets_one_row_per_event_and_tracks_the_last_seq(js_store, tmp_path):
    await fill(js_store, 25)
    db = open_db(tmp_path / "rm.db")
    runner = ProjectionRunner(db, [EventLog()], js_store, batch_size=7)
    assert await runner.catch_up() == 25
    assert db.execute("SELECT count(*), min(seq), max(seq) FROM event_log").fetchone() == (25, 1, 25)
    assert tracked(db, "event_log") == (EventLog.version, 25)
    assert db.execute("SELECT type, aggregate, version FROM event_log WHERE seq=4").fetchone() == ("CounterIncremented", "test.counter/c0", 2)


async def test_an_infrastructure_failure_rolls_back_its_whole_batch_skips_nothing_and_resuming_applies_each_event_once(js_store, tmp_path):
    await fill(js_store, 10, aggregates=1)
    db = open_db(tmp_path / "rm.db")
    failing = Totals()
    failing.fail_on = 6
    with pytest.raises(ProjectionError, match="totals failed on seq 7"):
        await ProjectionRunner(db, [failing], js_store, batch_size=4).catch_up()
    # batches [1-4] committed; [5-8] rolled back entirely, rows and tracking alike; nothing recorded as skipped
    assert tracked(db, "totals") == (1, 4) and totals(db) == {"c0": 0 + 1 + 2 + 3}
    assert skipped_messages(db) == []
    assert await ProjectionRunner(db, [Totals()], js_store, batch_size=4).catch_up() == 6
    assert totals(db) == {"c0": sum(range(10))} and tracked(db, "totals") == (1, 10)


async def test_a_failed_batch_does_not_advance_the_runners_position(js_store, tmp_path):
    """``position`` is what a read model's ``wait_for`` trusts: it must stay at the last committed batch."""
    await fill(js_store, 10, aggregates=1)
    failing = Totals()
    failing.fail_on = 6
    runner = ProjectionRunner(open_db(tmp_path / "rm.db"), [failing], js_store, batch_size=4)
    with pytest.raises(ProjectionError):
        await runner.catch_up()
    assert runner.position == 4 == tracked(runner.db, "totals")[1]


async def test_bumping_a_projection_version_rebuilds_it_from_the_log(js_store, tmp_path):
    await fill(js_store, 5, aggregates=1)
    db = open_db(tmp_path / "rm.db")
    await ProjectionRunner(db, [Totals()], js_store).catch_up()
    db.execute("UPDATE totals SET total = -1")  # a stale schema's leftovers

    class TotalsV2(Totals):
        version = 2

    await ProjectionRunner(db, [TotalsV2()], js_store).catch_up()
    assert totals(db) == {"c0": 10} and tracked(db, "totals") == (2, 5)


async def test_follow_applies_events_appended_after_the_catch_up(js_store, tmp_path):
    await fill(js_store, 3)
    db = open_db(tmp_path / "rm.db")
    runner = ProjectionRunner(db, [EventLog()], js_store)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.follow(stop))
    await eventually(lambda: tracked(db, "event_log") == (EventLog.version, 3))
    await fill(js_store, 2, aggregates=2, prefix="d")
    await eventually(lambda: tracked(db, "event_log")[1] == 5)
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_rebuild_writes_a_fresh_database_and_refuses_to_overwrite_without_force(js_store, tmp_path):
    await fill(js_store, 12)
    target = tmp_path / "audit" / "rebuilt.db"
    assert await rebuild(js_store, target, [EventLog(), Totals()]) == 24
    assert sorted(p.name for p in target.parent.iterdir()) == ["rebuilt.db"]  # no temp file left behind
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*) FROM event_log").fetchone() == (12,)
    with pytest.raises(AuditError, match="exists"):
        await rebuild(js_store, target, [EventLog()])
    assert await rebuild(js_store, target, [EventLog()], force=True) == 12


async def test_verify_is_clean_for_an_honest_database_and_names_a_tampered_table(js_store, tmp_path):
    await fill(js_store, 9)
    live_path = tmp_path / "live.db"
    live = open_db(live_path)
    await ProjectionRunner(live, [EventLog(), Totals()], js_store).catch_up()
    await fill_more(js_store)  # the log moves on after the live db's position: not a difference
    checks = await verify(js_store, live_path, [EventLog(), Totals()])
    assert {c.table for c in checks} == {"event_log", "totals"} and all(c.ok for c in checks)

    live.execute("UPDATE totals SET total = total + 1 WHERE id = 'c1'")
    checks = {c.table: c for c in await verify(js_store, live_path, [EventLog(), Totals()])}
    assert checks["event_log"].ok and not checks["totals"].ok
    assert checks["totals"].live_rows == checks["totals"].rebuilt_rows == 3


async def fill_more(store):
    commit = new_commit(AggregateRef("test", "counter", "late"), [CounterIncremented(by=100)], version=0, source="test")
    await store.append(commit, expected_seq=0)


def test_table_checksum_ignores_insertion_order(tmp_path):
    a, b = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    for db, rows in ((a, [(1, "x"), (2, "y")]), (b, [(2, "y"), (1, "x")])):
        db.execute("CREATE TABLE t (k INTEGER, v TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", rows)
    assert table_checksum(a, "t") == table_checksum(b, "t")
    b.execute("UPDATE t SET v = 'z' WHERE k = 1")
    assert table_checksum(a, "t") != table_checksum(b, "t")
