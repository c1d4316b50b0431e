"""Bad messages in the log never halt a read model: each is skipped, whole commit at once, by every projection
alike (so rebuilds stay identical), recorded in ``skipped_messages``, and named by ``audit verify``; a failure
of SQLite itself skips nothing and is retried."""

from __future__ import annotations

import asyncio
import sqlite3

from events.envelope import AggregateRef, new_commit
from projections.audit import rebuild, table_checksum, verify_report
from projections.event_log import EventLog
from projections.readmodel import LocalReadModel
from projections.runner import ProjectionRunner
from projections.sqlite import SkippedMessage, open_db, skipped_messages, tracked
from services.harness.deadletter import dead_letter
from tests.events.store_contract import CounterIncremented
from tests.poison import KINDS, REASONS, publish_bad
from tests.projections.test_projections import Totals, fill, totals
from tests.support import eventually

LIKE = new_commit(AggregateRef("test", "counter", "like"), [CounterIncremented(by=1)], version=0, source="test")


async def bad_log(nc, store) -> dict[str, int]:
    """Two valid events, every kind of bad message, two more valid events. Returns kind → seq."""
    await fill(store, 2, aggregates=1, prefix="before")
    bad = await publish_bad(nc, LIKE, missing="by")
    await fill(store, 2, aggregates=1, prefix="after")
    return bad


async def test_every_kind_of_bad_message_is_skipped_and_the_events_after_it_are_applied(nc, js_store, tmp_path):
    bad = await bad_log(nc, js_store)
    db = open_db(tmp_path / "rm.db")
    runner = ProjectionRunner(db, [EventLog(), Totals()], js_store, batch_size=4)  # bad messages span batches
    assert await runner.catch_up() == 4 * 2
    last = await js_store.last_seq()
    assert tracked(db, "event_log")[1] == tracked(db, "totals")[1] == last
    assert totals(db) == {"before0": 0 + 1, "after0": 0 + 1}
    assert [s for (s,) in db.execute("SELECT seq FROM event_log ORDER BY seq")] == [1, 2, last - 1, last]
    skipped = {m.seq: m for m in skipped_messages(db)}
    assert sorted(skipped) == sorted(bad.values())
    for kind in KINDS:
        message = skipped[bad[kind]]
        assert message.projections == ("event_log", "totals") and message.subject.endswith(f"bad-{kind}.CounterIncremented")
        assert len(message.reasons) == 1 and REASONS[kind] in message.reasons[0], (kind, message.reasons)


async def test_a_projection_failing_on_a_commit_skips_that_whole_commit_and_the_other_projections_apply_it(js_store, tmp_path):
    await fill(js_store, 3, aggregates=1)
    pair = new_commit(AggregateRef("test", "counter", "pair"), [CounterIncremented(by=5), CounterIncremented(by=6)],
                      version=0, source="test")
    pair_seq = (await js_store.append(pair, expected_seq=0)).seq
    await fill(js_store, 2, aggregates=1, prefix="after")
    failing = Totals()
    failing.fail_on, failing.failure = 6, KeyError("field the projection needs")
    db = open_db(tmp_path / "rm.db")
    await ProjectionRunner(db, [EventLog(), failing], js_store, batch_size=2).catch_up()
    # by=5 went with the failing by=6: a commit is applied whole or not at all
    assert totals(db) == {"c0": 0 + 1 + 2, "after0": 0 + 1}
    assert db.execute("SELECT count(*) FROM event_log").fetchone() == (3 + 2 + 2,)
    assert skipped_messages(db) == [SkippedMessage(
        pair_seq, pair.subject,
        (f"projection totals failed on seq {pair_seq} (CounterIncremented): KeyError: 'field the projection needs'",),
        ("totals",))]
    assert tracked(db, "totals")[1] == tracked(db, "event_log")[1] == await js_store.last_seq()


async def test_a_sqlite_failure_while_following_skips_nothing_and_is_retried_until_it_passes(js_store, tmp_path):
    await fill(js_store, 4, aggregates=1)

    class FullDiskOnce(Totals):
        failures = 0

        def apply(self, db, record):
            if record.data["by"] == 2 and not self.failures:
                self.failures += 1
                raise sqlite3.OperationalError("database or disk is full")
            super().apply(db, record)

    projection = FullDiskOnce()
    db = open_db(tmp_path / "rm.db")
    runner = ProjectionRunner(db, [projection], js_store)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.follow(stop))
    await eventually(lambda: projection.failures == 1 and runner.last_error is not None)
    await eventually(lambda: tracked(db, "totals")[1] == 4, detail=runner.last_error)
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert totals(db) == {"c0": 0 + 1 + 2 + 3} and skipped_messages(db) == [] and runner.last_error is None


async def test_a_services_read_model_gets_past_bad_messages_and_restarts_from_its_file_and_from_scratch(nc, js_store, tmp_path):
    await bad_log(nc, js_store)
    last = await js_store.last_seq()
    for path in (tmp_path / "rm.db", tmp_path / "rm.db", tmp_path / "fresh.db"):  # first run, restart, rebuild
        rm = LocalReadModel(path, [EventLog(), Totals()], js_store)
        await rm.start()
        try:
            await rm.wait_for(last, timeout=10)
            assert totals(rm.db) == {"before0": 1, "after0": 1}
        finally:
            await rm.stop()
    await fill(js_store, 1, aggregates=1, prefix="later")
    rm = LocalReadModel(tmp_path / "rm.db", [EventLog(), Totals()], js_store)
    await rm.start()
    try:
        await rm.wait_for(last + 1, timeout=10)
        assert totals(rm.db)["later0"] == 0
    finally:
        await rm.stop()


async def test_two_rebuilds_of_a_log_with_bad_messages_are_identical(nc, js_store, tmp_path):
    await bad_log(nc, js_store)
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    for target in (first, second):
        await rebuild(js_store, target, [EventLog(), Totals()])
    a, b = sqlite3.connect(first), sqlite3.connect(second)
    for table in ("event_log", "totals", "skipped_messages", "projection_tracking"):
        assert table_checksum(a, table) == table_checksum(b, table)
    assert table_checksum(a, "skipped_messages")[0] == len(KINDS) * 2


async def test_verify_names_each_skipped_message_and_fails_only_while_one_has_no_dead_letter_record(nc, js_store, tmp_path):
    bad = await bad_log(nc, js_store)
    live = tmp_path / "live.db"
    await rebuild(js_store, live, [EventLog(), Totals()])
    report = await verify_report(js_store, live, [EventLog(), Totals()])
    assert all(c.ok for c in report.tables)
    assert [m.seq for m in report.skipped] == sorted(bad.values())
    assert report.unrecorded == report.skipped and not report.ok  # skipped silently: an auditor must hear of it

    for m in report.skipped[:-1]:  # as the projections service records them
        raw = await nc.jetstream().get_msg("NC_EVENTS", m.seq)
        await dead_letter(nc, js_store, service="projections", subject=m.subject, seq=m.seq, data=raw.data,
                          headers=raw.headers, deliveries=1, error="; ".join(m.reasons))
    report = await verify_report(js_store, live, [EventLog(), Totals()])
    assert [m.seq for m in report.unrecorded] == [max(bad.values())] and not report.ok

    last = report.skipped[-1]
    raw = await nc.jetstream().get_msg("NC_EVENTS", last.seq)
    await dead_letter(nc, js_store, service="projections", subject=last.subject, seq=last.seq, data=raw.data,
                      headers=raw.headers, deliveries=1, error=last.reasons[0])
    report = await verify_report(js_store, live, [EventLog(), Totals()])
    assert report.ok and report.recorded_by == {seq: {"projections"} for seq in bad.values()}
