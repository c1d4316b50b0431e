"""As-of rebuilds: every projection replayed up to a past moment equals what the live read models held then."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

import pytest

from events.subjects import EVENT_STREAM
from projections.asof import AsOfError, rebuild_as_of, seq_at
from projections.audit import table_checksum
from projections.catalog import all_projections
from projections.runner import ProjectionRunner
from projections.sqlite import open_db, tracked
from services.cli.auditlog import js_stored_at
from tests.audit.scenario import History, phase
from tests.support import eventually, projected


def snapshot(path) -> dict[str, tuple[int, str]]:
    """Every projection table's (row count, checksum), plus the tracking table."""
    db = sqlite3.connect(path)
    try:
        tables = [t for p in all_projections() for t in p.tables]
        return {t: table_checksum(db, t) for t in [*tables, "projection_tracking"]}
    finally:
        db.close()


async def test_as_of_rebuilds_at_several_points_equal_the_live_read_models_captured_then(nc, js_store, tmp_path):
    live_path = tmp_path / "live" / "readmodels.db"
    live_db = open_db(live_path)
    runner = ProjectionRunner(live_db, all_projections(), js_store)
    stop = asyncio.Event()
    follower = asyncio.create_task(runner.follow(stop))
    history = History(js_store)
    points = []  # (last seq, storage time of that message, copy of the live database then)
    try:
        for n in range(4):
            last = await phase(history, n)
            await eventually(lambda: projected(live_path, last), detail=f"live read model at seq {last}")
            copy = tmp_path / f"live-{n}.db"
            src = sqlite3.connect(live_path)
            dst = sqlite3.connect(copy)
            src.backup(dst)  # a consistent copy while the runner keeps following
            src.close()
            dst.close()
            stored = (await nc.jetstream().get_msg(EVENT_STREAM, last, direct=True)).time
            points.append((last, stored, copy))
    finally:
        stop.set()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        live_db.close()
    assert len({tuple(sorted(snapshot(c).items())) for _, _, c in points}) == len(points), "a phase changed nothing"

    total = await js_store.last_seq()
    for i, (last, stored, copy) in enumerate(points):
        by_seq = await rebuild_as_of(js_store, tmp_path / f"seq-{i}", all_projections(), until_seq=last)
        assert by_seq.seq == last
        assert snapshot(by_seq.db) == snapshot(copy), f"--until-seq {last}"
        at = await seq_at(stored, total, js_stored_at(nc))
        assert at == last
        by_time = await rebuild_as_of(js_store, tmp_path / f"time-{i}", all_projections(), until_seq=at)
        assert snapshot(by_time.db) == snapshot(copy), f"--as-of {stored}"

    first_stored = (await nc.jetstream().get_msg(EVENT_STREAM, 1, direct=True)).time
    assert await seq_at(first_stored - timedelta(seconds=1), total, js_stored_at(nc)) == 0
    assert await seq_at(points[-1][1] + timedelta(days=1), total, js_stored_at(nc)) == total
    empty = await rebuild_as_of(js_store, tmp_path / "before", all_projections(), until_seq=0)
    db = sqlite3.connect(empty.db)
    assert db.execute("SELECT count(*) FROM event_log").fetchone() == (0,)
    db.close()


async def test_seq_at_finds_the_last_message_stored_at_or_before_a_time_in_any_log(tmp_path):
    from datetime import datetime, timezone
    base = datetime(2026, 3, 1, tzinfo=timezone.utc)
    times = {1: 0, 2: 5, 3: 5, 4: 9, 6: 20, 7: 21}  # seq 5 has no message (a copy with a gap)

    async def stored_at(seq):
        return base + timedelta(seconds=times[seq]) if seq in times else None

    expect = {-1: 0, 0: 1, 4: 1, 5: 3, 8: 3, 9: 4, 19: 4, 20: 6, 21: 7, 99: 7}
    for second, seq in expect.items():
        assert await seq_at(base + timedelta(seconds=second), 7, stored_at) == seq, second


async def test_an_as_of_rebuild_never_writes_over_the_live_read_models_or_an_earlier_rebuild(js_store, tmp_path):
    history = History(js_store)
    last = await phase(history, 0)
    live = tmp_path / "data" / "readmodels.db"
    live.parent.mkdir()
    live.write_bytes(b"live")
    with pytest.raises(AsOfError, match="live read models"):
        await rebuild_as_of(js_store, live.parent, all_projections(), until_seq=last, live_db=live)
    assert live.read_bytes() == b"live"
    first = await rebuild_as_of(js_store, tmp_path / "then", all_projections(), until_seq=1)
    with pytest.raises(Exception, match="exists"):
        await rebuild_as_of(js_store, tmp_path / "then", all_projections(), until_seq=last)
    db = sqlite3.connect(first.db)
    assert tracked(db, "event_log")[1] == 1
    db.close()
