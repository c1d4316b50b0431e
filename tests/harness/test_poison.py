"""A service against bad messages in the log (real nats-server): its consumer dead-letters each one once, with
the reason, and handles what follows; its private read model gets past them; a restart changes nothing."""

from __future__ import annotations

import json
import sqlite3

from events.envelope import AggregateRef, new_commit
from projections.base import EventRecord, Projection
from projections.readmodel import LocalReadModel
from services.harness.service import Emit, Service
from tests.harness.test_runner import FAST, PingSent, PongSent, ping, pongs, run
from events.store.streams import StreamSettings, ensure_streams
from events.subjects import DEAD_LETTER_STREAM
from tests.poison import HOSTILE, KINDS, publish_bad
from tests.support import equals, eventually, has_at_least

CONSUMER_REASONS = {"garbage": "not JSON", "reply": "not a CloudEvents batch", "missing_field": "Field required",
                    "object_not_batch": "not a CloudEvents batch", "no_cloudevents_attributes": "'id' is missing",
                    "unknown_type": "'NoSuchEvent' is not in the catalogue", "deeply_nested": "nested too deeply",
                    "oversized": "Extra inputs are not permitted", "hostile_strings": "validation error for PingSent"}
"""A phrase of each kind's dead-letter error (the consumer validates payloads fully, with pydantic)."""


class Pings(Projection):
    name = "pings"
    tables = {"pings": "CREATE TABLE IF NOT EXISTS pings (n INTEGER PRIMARY KEY)"}
    event_types = frozenset({"PingSent"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        db.execute("INSERT OR REPLACE INTO pings VALUES (?)", (record.data["n"],))


def pinger(readmodel: LocalReadModel, calls: list[int]) -> Service:
    """Answers each ping with a pong, once its read model holds that ping (so a pong proves it caught up)."""

    async def on_ping(d, _deps):
        calls.append(d.payload.n)
        if not readmodel.query("SELECT 1 FROM pings WHERE n = ?", (d.payload.n,)):
            raise AssertionError(f"read model lacks ping {d.payload.n} although it was waited for")
        return [Emit.new(f"pong{d.payload.n}", PongSent(n=d.payload.n))]

    return Service("pinger", {"PingSent": on_ping}, readmodel=readmodel)


async def dead_letters(store, service: str) -> list:
    return [e.payload() async for c in store.read(subject_filter="nc.evt.system.deadletter.>") for e in c.events
            if e.payload().service == service]


async def test_every_kind_of_bad_message_is_dead_lettered_once_with_its_reason_and_later_events_are_handled(nc, js_store, tmp_path):
    calls: list[int] = []
    runner = await run(pinger(LocalReadModel(tmp_path / "rm.db", [Pings()], js_store), calls), nc, js_store, FAST)
    await ping(js_store, 1)
    like = new_commit(AggregateRef("test", "ping", "like"), [PingSent(n=0)], version=0, source="test")
    bad = await publish_bad(nc, like, missing="n")
    await ping(js_store, 2)
    await eventually(lambda: equals(pongs(js_store), [1, 2]))
    await eventually(lambda: has_at_least(dead_letters(js_store, "pinger"), len(KINDS)))
    notices = {n.stream_seq: n for n in await dead_letters(js_store, "pinger")}
    assert sorted(notices) == sorted(bad.values())
    for kind in KINDS:
        notice = notices[bad[kind]]
        assert notice.deliveries == 1 and CONSUMER_REASONS[kind] in notice.error, (kind, notice.error)
        assert notice.subject.endswith(f".bad-{kind}.PingSent")
        kept = await nc.jetstream().get_msg(DEAD_LETTER_STREAM, notice.dead_letter_seq)
        assert kept.headers["Nc-Error"] == notice.error and kept.headers["Nc-Original-Seq"] == str(bad[kind])
        assert bool(kept.data) != (kind == "oversized"), kind  # an oversized body is not copied whole
    assert HOSTILE not in notices[bad["hostile_strings"]].error  # and no header carries a control character
    assert calls == [1, 2] and runner.healthy
    await runner.stop()

    # A restart resumes after what the durable consumer acked (nothing is dead-lettered again) and the read model
    # resumes from its file past the bad messages; the next ping is the barrier.
    runner = await run(pinger(LocalReadModel(tmp_path / "rm.db", [Pings()], js_store), calls), nc, js_store, FAST)
    await ping(js_store, 3)
    await eventually(lambda: equals(pongs(js_store), [1, 2, 3]))
    assert len(await dead_letters(js_store, "pinger")) == len(KINDS) and calls == [1, 2, 3]
    await runner.stop()


async def test_a_commit_with_one_bad_event_is_dead_lettered_whole_before_any_handler_runs(nc, js_store, tmp_path):
    calls: list[int] = []
    runner = await run(pinger(LocalReadModel(tmp_path / "rm.db", [Pings()], js_store), calls), nc, js_store, FAST)
    commit = new_commit(AggregateRef("test", "ping", "two"), [PingSent(n=7), PingSent(n=8)], version=0, source="test")
    subject, headers, body = commit.encode()
    events = json.loads(body)
    events[1]["data"] = {"n": "eight"}  # passes the replays' cheap check (fields present); does not validate
    bad = await nc.jetstream().publish(subject, json.dumps(events).encode(), headers=headers, stream="NC_EVENTS")
    await ping(js_store, 9)
    await eventually(lambda: equals(pongs(js_store), [9]))
    [notice] = await dead_letters(js_store, "pinger")
    assert notice.stream_seq == bad.seq and "PingSent" in notice.error and calls == [9]
    await runner.stop()


async def test_a_dead_letter_that_cannot_be_stored_does_not_stop_the_consumer_and_is_stored_once_it_can(nc, js_store, tmp_path):
    calls: list[int] = []
    await nc.jetstream().delete_stream(DEAD_LETTER_STREAM)  # every copy to nc.dlq.… now fails (no responders)
    runner = await run(pinger(LocalReadModel(tmp_path / "rm.db", [Pings()], js_store), calls), nc, js_store, FAST)
    like = new_commit(AggregateRef("test", "ping", "like"), [PingSent(n=0)], version=0, source="test")
    bad = (await publish_bad(nc, like, missing="n"))["garbage"]
    await ping(js_store, 1)
    await eventually(lambda: equals(pongs(js_store), [1]))  # handled after the message that could not be settled
    assert runner.healthy and await dead_letters(js_store, "pinger") == []

    await ensure_streams(nc.jetstream(), StreamSettings(duplicate_window_s=60))
    await eventually(lambda: has_at_least(dead_letters(js_store, "pinger"), 1))
    await ping(js_store, 2)
    await eventually(lambda: equals(pongs(js_store), [1, 2]))
    [notice] = [n for n in await dead_letters(js_store, "pinger") if n.stream_seq == bad]
    assert "not JSON" in notice.error and calls == [1, 2] and runner.healthy
    await runner.stop()
