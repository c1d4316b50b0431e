"""`nanoclaw audit rebuild --as-of|--until-seq`, `audit show` and `audit export` from the command line."""

from __future__ import annotations

import base64
import json
import sqlite3

import nats

from events.store.jetstream import JetStreamEventStore
from events.store.streams import ensure_streams
from events.subjects import EVENT_STREAM
from tests.audit.scenario import History, phase
from tests.cli.test_cli import cli


async def seeded(nats_server) -> tuple[History, list[int], list[str]]:
    """Phases 0..2 of the scenario; the last seq of each phase and its storage time."""
    nc = await nats.connect(nats_server.url)
    await ensure_streams(nc.jetstream())
    history = History(JetStreamEventStore(nc))
    lasts, times = [], []
    for n in range(3):
        lasts.append(await phase(history, n))
        times.append((await nc.jetstream().get_msg(EVENT_STREAM, lasts[-1], direct=True)).time.isoformat())
    await nc.close()
    return history, lasts, times


def groups(db_path) -> dict[str, str]:
    db = sqlite3.connect(db_path)
    try:
        return dict(db.execute("SELECT jid, name FROM registered_groups"))
    finally:
        db.close()


async def test_audit_rebuild_as_of_a_time_or_a_sequence_writes_the_read_models_of_then_into_a_directory_of_its_own(
        nats_server, tmp_path):
    _, lasts, times = await seeded(nats_server)
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}
    first = cli(["audit", "rebuild", "--as-of", times[0], "--out", str(tmp_path / "t0")], tmp_path, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"stream seq 1..{lasts[0]}" in first.stdout
    assert groups(tmp_path / "t0" / "readmodels.db") == {"term:a": "Alpha"}
    second = cli(["audit", "rebuild", "--until-seq", str(lasts[1]), "--out", str(tmp_path / "s1")], tmp_path, env)
    assert second.returncode == 0, second.stderr
    assert groups(tmp_path / "s1" / "readmodels.db") == {"term:a": "Alpha renamed", "term:b": "Beta"}

    live = cli(["audit", "rebuild", "--until-seq", "1", "--out", str(tmp_path / "data" / "projections")], tmp_path, env)
    assert live.returncode == 2 and "live read models" in live.stderr
    both = cli(["audit", "rebuild", "--until-seq", "1", "--as-of", times[0], "--out", str(tmp_path / "x")], tmp_path, env)
    assert both.returncode == 2 and "exactly one of --as-of" in both.stderr
    bad_time = cli(["audit", "rebuild", "--as-of", "Tuesday", "--out", str(tmp_path / "y")], tmp_path, env)
    assert bad_time.returncode == 2 and "'Tuesday' is not an ISO 8601 time" in bad_time.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


async def test_audit_show_prints_an_aggregates_history_with_every_string_escaped_and_as_ndjson(nats_server, tmp_path):
    _, lasts, _ = await seeded(nats_server)
    nc = await nats.connect(nats_server.url)
    history = History(JetStreamEventStore(nc))
    history.heads = {}
    hostile = await history.group("term:evil", "Evil\x1b[2J\u202egnp.exe")
    await nc.close()
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}

    shown = cli(["audit", "show", "term:a"], tmp_path, env)
    assert shown.returncode == 0, shown.stderr
    heads = [line for line in shown.stdout.splitlines() if line.startswith("#")]
    kinds = [line.split("  ")[3] for line in heads]
    # the group, its chat-name aggregate: oldest first, across aggregate types with this id
    assert kinds == ["GroupRegistered", "ChatNameSynced", "GroupUpdated", "ChatNameSynced", "GroupRemoved"], heads
    assert 'name: "Alpha renamed"' in shown.stdout and "router.group v2" in shown.stdout

    only = cli(["audit", "show", "term:a", "--type", "router.group", "--json"], tmp_path, env)
    lines = [json.loads(line) for line in only.stdout.splitlines()]
    assert [r["event"]["eventtype"] for r in lines] == ["GroupRegistered", "GroupUpdated", "GroupRemoved"]
    assert [r["seq"] for r in lines] == sorted(r["seq"] for r in lines)
    assert lines[-1]["event"]["aggregateversion"] == 3

    evil = cli(["audit", "show", "term:evil"], tmp_path, env)
    assert "\x1b" not in evil.stdout and "\u202e" not in evil.stdout
    assert '"Evil\\u001b[2J\\u202egnp.exe"' in evil.stdout and f"#{hostile}" in evil.stdout
    evil_json = cli(["audit", "show", "term:evil", "--json"], tmp_path, env)
    assert "\x1b" not in evil_json.stdout
    assert json.loads(evil_json.stdout)["event"]["data"]["name"] == "Evil\x1b[2J\u202egnp.exe"

    none = cli(["audit", "show", "term:nobody"], tmp_path, env)
    assert none.returncode == 1 and "no events for aggregate id 'term:nobody'" in none.stderr
    wrong = cli(["audit", "show", "term:a", "--type", "router"], tmp_path, env)
    assert wrong.returncode == 2 and "CONTEXT.TYPE" in wrong.stderr


async def test_audit_export_writes_jsonl_or_sqlite_for_a_subject_and_range_and_keeps_bad_messages_as_bytes(
        nats_server, tmp_path):
    _, lasts, times = await seeded(nats_server)
    nc = await nats.connect(nats_server.url)
    garbage = await nc.jetstream().publish("nc.evt.chat.message.junk.MessageReceived", b"\x00\xff{not json",
                                           stream=EVENT_STREAM)
    await nc.close()
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}

    everything = cli(["audit", "export", str(tmp_path / "all.jsonl")], tmp_path, env)
    assert everything.returncode == 0, everything.stderr
    records = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, garbage.seq + 1))
    assert records[0]["events"][0]["eventtype"] == "GroupRegistered" and records[0]["headers"]["Nats-Msg-Id"]
    assert "not JSON" in records[-1]["invalid"] and base64.b64decode(records[-1]["data_base64"]) == b"\x00\xff{not json"

    received = cli(["audit", "export", str(tmp_path / "msgs.jsonl"), "--subject", "nc.evt.chat.message.>",
                    "--from", str(lasts[0] + 1), "--to", times[2]], tmp_path, env)
    assert received.returncode == 0, received.stderr
    texts = [json.loads(line)["events"][0]["data"]["text"] for line in (tmp_path / "msgs.jsonl").read_text().splitlines()]
    assert texts == ["second\nline", "after removal"]

    db_path = tmp_path / "window.db"
    window = cli(["audit", "export", str(db_path), "--format", "sqlite", "--from", times[0], "--to", str(lasts[1])],
                 tmp_path, env)
    assert window.returncode == 0, window.stderr
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT min(seq), max(seq), count(*) FROM messages").fetchone() == (lasts[0], lasts[1],
                                                                                          lasts[1] - lasts[0] + 1)
    assert db.execute("SELECT type FROM events WHERE seq=?", (lasts[1],)).fetchone() == ("ChatNameSynced",)
    db.close()

    again = cli(["audit", "export", str(db_path), "--format", "sqlite"], tmp_path, env)
    assert again.returncode == 2 and "exists" in again.stderr
    unknown = cli(["audit", "export", str(tmp_path / "x.csv"), "--format", "csv"], tmp_path, env)
    assert unknown.returncode == 2 and "unknown export format 'csv'" in unknown.stderr
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob("*.partial"))
