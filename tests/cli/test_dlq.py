"""`nanoclaw dlq list|show|retry|drop` against a real nats-server with a real service runner (issue 16: dead
letters existed but nobody could list, inspect or re-drive them)."""

from __future__ import annotations

import asyncio
import json

from events.catalogue.base import EventPayload
from events.envelope import AggregateRef, new_commit
from services.harness.runner import ServiceRunner
from services.harness.service import Emit, Service
from tests.bus import FAST, events_of
from tests.cli.test_cli import cli
from tests.support import eventually, has_at_least


class DlqPingSent(EventPayload):
    context = "test"
    aggregate = "dlqping"
    n: int


class DlqPongSent(EventPayload):
    context = "test"
    aggregate = "dlqpong"
    n: int


def env_for(server) -> dict[str, str]:
    return {"NANOCLAW_NATS__URLS": f'["{server.url}"]'}


async def nanoclaw(tmp_path, server, *args: str):
    return await asyncio.to_thread(cli, list(args), tmp_path, env_for(server))


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def pongs(store) -> list[int]:
    return [c.events[0].payload().n async for c in store.read(subject_filter="nc.evt.test.dlqpong.>")]


async def start_pinger(nc, store, state: dict) -> ServiceRunner:
    async def on_ping(d, _deps):
        if state["broken"]:
            raise RuntimeError(f"ping {d.payload.n} cannot be handled")
        return [Emit.new(f"pong{d.payload.n}", DlqPongSent(n=d.payload.n))]

    runner = ServiceRunner(Service("pinger", {"DlqPingSent": on_ping}), nc, store, FAST)
    await runner.start()
    return runner


async def dead_lettered(store, n: int) -> None:
    await eventually(lambda: has_at_least(events_of(store, "MessageDeadLettered"), n), timeout=30)


async def test_a_dead_letter_is_listed_shown_retried_until_it_succeeds_with_one_id_per_attempt(nats_server, nc, js_store, tmp_path):
    state = {"broken": True}
    runner = await start_pinger(nc, js_store, state)
    try:
        ref = AggregateRef("test", "dlqping", "p1")
        seq = (await js_store.append(new_commit(ref, [DlqPingSent(n=1)], version=0, source="test"), expected_seq=0)).seq
        await dead_lettered(js_store, 1)

        listed = await nanoclaw(tmp_path, nats_server, "dlq", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [letter] = ndjson(listed.stdout)
        assert letter["id"] == f"pinger:{seq}:1" and letter["service"] == "pinger" and letter["state"] == "open"
        assert letter["event_type"] == "DlqPingSent" and letter["subject"] == f"nc.evt.test.dlqping.p1.DlqPingSent"
        assert "ping 1 cannot be handled" in letter["error"] and letter["deliveries"] == FAST.max_deliver and letter["at"]

        shown = await nanoclaw(tmp_path, nats_server, "dlq", "show", f"pinger:{seq}", "--json")
        assert shown.returncode == 0, shown.stderr
        detail = json.loads(shown.stdout)
        assert detail["kept"] and json.loads(detail["body"])[0]["data"] == {"n": 1}
        assert detail["headers"]["Nc-Original-Seq"] == str(seq)

        # Still broken: the retry fails again and becomes attempt 2, its own dead letter.
        again = await nanoclaw(tmp_path, nats_server, "dlq", "retry", f"pinger:{seq}:1")
        assert again.returncode == 1 and f"now pinger:{seq}:2" in again.stderr, again.stderr
        open_now = ndjson((await nanoclaw(tmp_path, nats_server, "dlq", "list", "--json")).stdout)
        assert [(d["id"], d["state"]) for d in open_now] == [(f"pinger:{seq}:2", "open")]
        kept = {d["id"]: d for d in ndjson((await nanoclaw(tmp_path, nats_server, "dlq", "list", "--all", "--json")).stdout)}
        assert kept[f"pinger:{seq}:1"]["state"] == "failed_again"
        assert kept[f"pinger:{seq}:1"]["dead_letter_seq"] != kept[f"pinger:{seq}:2"]["dead_letter_seq"]
        stale = await nanoclaw(tmp_path, nats_server, "dlq", "retry", f"pinger:{seq}:1")
        assert stale.returncode == 1 and "failed_again, not open" in stale.stderr and f"pinger:{seq}:2" in stale.stderr

        # Fixed: the newest attempt is retried, handled, and no longer listed.
        state["broken"] = False
        fixed = await nanoclaw(tmp_path, nats_server, "dlq", "retry", f"pinger:{seq}")
        assert fixed.returncode == 0 and f"pinger:{seq}:2 handled by pinger" in fixed.stderr, fixed.stderr
        assert await pongs(js_store) == [1]
        assert ndjson((await nanoclaw(tmp_path, nats_server, "dlq", "list", "--json")).stdout) == []
        everything = ndjson((await nanoclaw(tmp_path, nats_server, "dlq", "list", "--all", "--json")).stdout)
        assert [(d["id"], d["state"]) for d in everything] == [(f"pinger:{seq}:1", "failed_again"),
                                                               (f"pinger:{seq}:2", "retried")]
    finally:
        await runner.stop()


async def test_a_retry_recorded_while_the_service_is_down_is_handled_when_it_starts(nats_server, nc, js_store, tmp_path):
    state = {"broken": True}
    runner = await start_pinger(nc, js_store, state)
    seq = (await js_store.append(new_commit(AggregateRef("test", "dlqping", "p2"), [DlqPingSent(n=2)], version=0,
                                            source="test"), expected_seq=0)).seq
    await dead_lettered(js_store, 1)
    await runner.stop()
    waited = await nanoclaw(tmp_path, nats_server, "dlq", "retry", f"pinger:{seq}", "--timeout", "0.5")
    assert waited.returncode == 3 and "no outcome within 0.5 s" in waited.stderr, waited.stderr
    state["broken"] = False
    runner = await start_pinger(nc, js_store, state)
    try:
        await eventually(lambda: has_at_least(events_of(js_store, "DeadLetterRetrySucceeded"), 1), timeout=30)
        assert await pongs(js_store) == [2]
    finally:
        await runner.stop()


async def test_a_dropped_dead_letter_is_hidden_kept_and_cannot_be_retried(nats_server, nc, js_store, tmp_path):
    runner = await start_pinger(nc, js_store, {"broken": True})
    try:
        seq = (await js_store.append(new_commit(AggregateRef("test", "dlqping", "p3"), [DlqPingSent(n=3)], version=0,
                                                source="test"), expected_seq=0)).seq
        await dead_lettered(js_store, 1)
        dropped = await nanoclaw(tmp_path, nats_server, "dlq", "drop", f"pinger:{seq}:1", "--reason", "obsolete ping")
        assert dropped.returncode == 0 and f"dropped pinger:{seq}:1" in dropped.stderr, dropped.stderr
        listed = await nanoclaw(tmp_path, nats_server, "dlq", "list")
        assert listed.returncode == 0 and "no open dead letters (1 resolved: --all)" in listed.stdout
        [d] = ndjson((await nanoclaw(tmp_path, nats_server, "dlq", "list", "--all", "--json")).stdout)
        assert d["state"] == "dropped"
        [event] = await events_of(js_store, "DeadLetterDropped")
        assert event.reason == "obsolete ping" and event.requested_by
        refused = await nanoclaw(tmp_path, nats_server, "dlq", "retry", f"pinger:{seq}")
        assert refused.returncode == 1 and "is dropped, not open" in refused.stderr
    finally:
        await runner.stop()


async def test_show_prints_a_hostile_body_escaped_and_bad_ids_are_named(nats_server, nc, js_store, tmp_path):
    runner = await start_pinger(nc, js_store, {"broken": False})
    try:
        hostile = b"\x1b[2J\x1b]0;owned\x07 \xe2\x80\xae reversed \xff\xfe not utf-8"
        ack = await nc.jetstream().publish("nc.evt.test.dlqping.bad.DlqPingSent", hostile, stream="NC_EVENTS")
        await dead_lettered(js_store, 1)
        shown = await nanoclaw(tmp_path, nats_server, "dlq", "show", f"pinger:{ack.seq}")
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\u202e" not in shown.stdout
        assert "\\u001b[2J" in shown.stdout and "\\u202e reversed" in shown.stdout and "\\xff\\xfe not utf-8" in shown.stdout
        assert "not a valid commit" in shown.stdout
        bad = await nanoclaw(tmp_path, nats_server, "dlq", "show", "pinger;42")
        assert bad.returncode == 2 and "expected <service>:<stream seq>[:<attempt>]" in bad.stderr
        missing = await nanoclaw(tmp_path, nats_server, "dlq", "show", "pinger:999999")
        assert missing.returncode == 1 and "no dead letter pinger:999999" in missing.stderr
    finally:
        await runner.stop()


async def test_status_shows_queue_depth_per_group_failures_and_open_dead_letters(nats_server, nc, js_store, tmp_path):
    from events.catalogue.queue import RunAbandoned, RunQueued
    from services.harness.emit import append_emit

    runner = await start_pinger(nc, js_store, {"broken": True})
    try:
        await js_store.append(new_commit(AggregateRef("test", "dlqping", "p4"), [DlqPingSent(n=4)], version=0,
                                         source="test"), expected_seq=0)
        await dead_lettered(js_store, 1)
    finally:
        await runner.stop()
    for n in (1, 2):
        queued = RunQueued(run_id=f"r{n}", chat_jid="term:work", group_folder="work", prompt="<messages/>", turn_id=f"t{n}")
        await append_emit(js_store, Emit.append("default", queued), source="test", msg_id=f"q{n}")
    abandoned = RunAbandoned(chat_jid="term:work", group_folder="work", run_id="r0", attempts=5, reason="gave up [:a:]")
    await append_emit(js_store, Emit.append("default", abandoned), source="test", msg_id="ab")

    status = await nanoclaw(tmp_path, nats_server, "status", "--json")
    assert status.returncode == 0, status.stderr
    [snap] = ndjson(status.stdout)
    assert snap["queue"]["depth"] == 2 and snap["queue"]["abandons"] == 1
    assert snap["queue"]["groups"] == [{"group_folder": "work", "waiting": 2, "running": 0, "retries": 0, "abandons": 1}]
    assert snap["failures"] == {"abandoned": 1} and snap["dead_letters_open"] == 1
    readable = await nanoclaw(tmp_path, nats_server, "status")
    assert readable.returncode == 0 and "dead letters: 1 open" in readable.stdout and "work" in readable.stdout

    failures = await nanoclaw(tmp_path, nats_server, "failures")
    assert failures.returncode == 0 and "gave up [:a:]" in failures.stdout, failures.stdout  # escaped, not an emoji
    [row] = ndjson((await nanoclaw(tmp_path, nats_server, "failures", "--json")).stdout)
    assert row["what"] == "abandoned" and row["attempts"] == 5 and row["group_folder"] == "work"
