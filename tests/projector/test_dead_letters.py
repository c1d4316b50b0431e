"""The projections service against bad messages in the log (real nats-server): it keeps projecting, records
each bad message once as ``MessageDeadLettered`` (with a copy on ``nc.dlq.projections``), and records none
again after a restart, whether its database survived or was rebuilt from scratch."""

from __future__ import annotations

import sqlite3

from events.catalogue.chat import ChatNameSynced
from events.envelope import AggregateRef, new_commit
from events.subjects import DEAD_LETTER_STREAM
from projections.audit import verify_report
from projections.catalog import all_projections
from projections.dead_letters import dead_lettered
from services.projector.service import build as build_projector, read_model_path
from tests.bus import context, events_of, running, settings
from tests.poison import KINDS, REASONS, bad_bodies, publish_bad
from tests.support import eventually, projected

AT = "2026-03-01T10:00:00.000Z"
LIKE = new_commit(AggregateRef("chat", "chat", "term:like"),
                  [ChatNameSynced(channel="terminal", chat_jid="term:like", name="Like", at=AT)], version=0, source="test")


async def name_chat(store, jid: str) -> int:
    commit = new_commit(AggregateRef("chat", "chat", jid), [ChatNameSynced(channel="terminal", chat_jid=jid,
                                                                             name=jid.upper(), at=AT)],
                        version=0, source="test")
    return (await store.append(commit, expected_seq=0)).seq


async def recorded(store) -> list:
    """Every ``MessageDeadLettered`` of the projections service, duplicates included."""
    return [n for n in await events_of(store, "MessageDeadLettered") if n.service == "projections"]


async def is_recorded(store, seq: int) -> bool:
    return seq in await dead_lettered(store, service="projections")


async def barrier(nc, store) -> int:
    """A new bad message, waited for until recorded. The recorder goes in stream order, so once this one is in,
    anything a restart would have recorded again is in too. Returns its seq."""
    seq = (await nc.jetstream().publish("nc.evt.chat.chat.barrier.ChatNameSynced", bad_bodies(LIKE, "name")["reply"],
                                        stream="NC_EVENTS")).seq
    await eventually(lambda: is_recorded(store, seq))
    return seq


async def test_the_projections_service_records_each_bad_message_once_and_keeps_projecting(nc, js_store, tmp_path):
    s = settings(tmp_path)
    ctx, path = context(nc, js_store, s), read_model_path(s.data_dir)
    async with running(build_projector, ctx):
        await name_chat(js_store, "term:before")
        bad = await publish_bad(nc, LIKE, missing="name")
        last = await name_chat(js_store, "term:after")
        await eventually(lambda: projected(path, last))
        await eventually(lambda: is_recorded(js_store, max(bad.values())))
    db = sqlite3.connect(path)
    assert {jid for (jid,) in db.execute("SELECT jid FROM chats")} == {"term:before", "term:after"}
    notices = {n.stream_seq: n for n in await recorded(js_store)}
    assert sorted(notices) == sorted(bad.values())
    for kind in KINDS:
        notice = notices[bad[kind]]
        assert REASONS[kind] in notice.error and notice.subject.endswith(f".bad-{kind}.ChatNameSynced"), notice
        kept = await nc.jetstream().get_msg(DEAD_LETTER_STREAM, notice.dead_letter_seq)
        body = bad_bodies(LIKE, "name")[kind]
        assert kept.headers["Nc-Original-Seq"] == str(bad[kind])
        if kind == "oversized":  # not copied whole: the copy says how big it was and where the original is
            assert not kept.data and kept.headers["Nc-Body-Size"] == str(len(body))
            assert f"the original is NC_EVENTS seq {bad[kind]}" in kept.headers["Nc-Body-Omitted"]
        else:
            assert kept.data == body and "Nc-Body-Omitted" not in kept.headers

    # Restart on the same database, then on none at all (rebuilt from the log): nothing is recorded twice.
    barriers = []
    for fresh_db in (False, True):
        if fresh_db:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        async with running(build_projector, ctx):
            barriers.append(await barrier(nc, js_store))
    assert sorted(n.stream_seq for n in await recorded(js_store)) == sorted([*bad.values(), *barriers])
    assert (await dead_lettered(js_store, service="projections")).keys() == {*bad.values(), *barriers}

    report = await verify_report(js_store, path, all_projections())
    assert report.ok and [m.seq for m in report.skipped] == sorted([*bad.values(), *barriers])
