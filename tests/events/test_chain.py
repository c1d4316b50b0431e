"""Tamper evidence: every commit links to its aggregate's previous commit; a verify of the log names the first
message altered, missing or out of order. Tampering happens on copies of the stream in a second server, never on
the stream the services write."""

from __future__ import annotations

import asyncio
import json
import random

import nats
import pytest

from events.chain import HDR_CHAIN, HDR_CHAIN_PREV, Checkpoint, link, verify_log
from events.errors import ConcurrencyError
from events.store.jetstream import JetStreamEventStore
from events.store.streams import StreamSettings, ensure_streams
from events.subjects import EVENT_STREAM
from services.harness.natsserver import EmbeddedNats
from tests.audit.scenario import History, phase
from tests.events.store_contract import CounterIncremented
from events.envelope import AggregateRef, new_commit

KEEP = ("Content-Type", "Nats-Msg-Id", "Nc-Aggregate-Version", "Nc-Event-Types", HDR_CHAIN, HDR_CHAIN_PREV)


async def messages(nc) -> list[tuple[str, dict, bytes]]:
    """Every message of the stream, in order: (subject, headers worth copying, body)."""
    out = []
    async for raw in JetStreamEventStore(nc).read_raw():
        out.append((raw.subject, {k: v for k, v in (raw.headers or {}).items() if k in KEEP}, raw.data))
    return out


@pytest.fixture
async def copy_server(tmp_path):
    server = EmbeddedNats(tmp_path / "copy", sync_always=False).start()
    server.connections = []
    yield server
    for nc in server.connections:
        await nc.close()
    server.stop()


async def copied(server: EmbeddedNats, msgs) -> JetStreamEventStore:
    """A fresh NC_EVENTS on ``server`` holding ``msgs`` in the given order (what an attacker with the store files,
    or a restored backup, could produce). The stream is recreated so every copy starts at seq 1."""
    nc = await nats.connect(server.url)
    server.connections.append(nc)
    js = nc.jetstream()
    try:
        await js.delete_stream(EVENT_STREAM)  # a copy's own stream: the test server's, never the services'
    except nats.js.errors.NotFoundError:
        pass
    await ensure_streams(js, StreamSettings(duplicate_window_s=1))
    for subject, headers, body in msgs:
        await js.publish(subject, body, headers=headers or None, stream=EVENT_STREAM)
    return JetStreamEventStore(nc)


async def concurrent_history(nc, writers: int = 4, commits: int = 60) -> int:
    """Several services' stores (each its own connection and memory of links) appending to the same few
    aggregates at once, retrying on conflicts; half the time a writer learns the aggregate's position from
    ``head`` (so its store must fetch the previous link), else from a full ``load``. Returns the conflicts."""
    connections = [await nats.connect(nc.connected_url.geturl()) for _ in range(writers)]
    conflicts = 0

    async def writer(store: JetStreamEventStore, n: int) -> None:
        nonlocal conflicts
        rng = random.Random(n)
        for i in range(commits // writers):
            ref = AggregateRef("test", "counter", f"c{rng.randrange(3)}")
            while True:
                if rng.random() < 0.5:
                    head = await store.head(ref)
                    seq, version = head.seq, head.version
                else:
                    loaded = await store.load(ref)
                    seq, version = (loaded[-1].seq, loaded[-1].version) if loaded else (0, 0)
                try:
                    await store.append(new_commit(ref, [CounterIncremented(by=i)], version=version, source=f"w{n}"),
                                       expected_seq=seq)
                    break
                except ConcurrencyError:
                    conflicts += 1

    try:
        await asyncio.gather(*(writer(JetStreamEventStore(c), n) for n, c in enumerate(connections)))
    finally:
        for c in connections:
            await c.close()
    return conflicts


async def test_commits_of_concurrent_writers_form_an_unbroken_chain_per_aggregate(nc, js_store):
    conflicts = await concurrent_history(nc)
    assert conflicts > 0, "the writers never raced: the test proves nothing about concurrency"
    result = await verify_log(js_store)
    assert result.findings == [] and result.chained == result.messages == 60
    raw = await nc.jetstream().get_msg(EVENT_STREAM, 1, direct=True)
    assert raw.headers[HDR_CHAIN] == link("", raw.subject, raw.headers["Nats-Msg-Id"], "1", "CounterIncremented",
                                          raw.data)


async def test_verify_names_the_first_altered_dropped_or_reordered_commit_of_a_copied_stream(nc, js_store, copy_server):
    history = History(js_store)
    for n in range(4):
        await phase(history, n)
    original = await messages(nc)
    clean = await verify_log(await copied(copy_server, original))
    assert clean.findings == [] and clean.messages == len(original)
    assert clean.checkpoint == (await verify_log(js_store)).checkpoint, "a faithful copy has the same digest"

    # term:a's group aggregate: registered (seq 1), renamed, removed
    group_a = [i for i, (s, _, _) in enumerate(original) if s.startswith("nc.evt.router.group.term:a.")]
    first, second, third = group_a

    tampered = list(original)
    subject, headers, body = tampered[second]
    tampered[second] = (subject, headers, body.replace(b"Alpha renamed", b"Alpha ruined"))
    found = (await verify_log(await copied(copy_server, tampered))).first_failure
    assert (found.seq, found.kind) == (second + 1, "altered"), found

    dropped = original[:second] + original[second + 1:]
    found = (await verify_log(await copied(copy_server, dropped))).first_failure
    assert (found.seq, found.kind) == (third, "missing"), found  # the removal, now at seq `third` of the copy

    swapped = list(original)
    swapped[first], swapped[second] = swapped[second], swapped[first]
    found = (await verify_log(await copied(copy_server, swapped))).first_failure
    assert (found.seq, found.kind) == (first + 1, "missing"), found  # the rename, before its registration
    out_of_order = [f for f in (await verify_log(await copied(copy_server, swapped))).findings if f.fails]
    # then the registration comes after the rename; the removal follows the rename, as it should
    assert [(f.seq, f.kind) for f in out_of_order] == [(first + 1, "missing"), (second + 1, "out of order")]


async def test_what_the_per_aggregate_chain_cannot_see_a_recorded_checkpoint_does(nc, js_store, copy_server):
    history = History(js_store)
    for n in range(3):
        await phase(history, n)
    original = await messages(nc)
    checkpoint = (await verify_log(js_store)).checkpoint
    assert checkpoint.seq == len(original)

    # 1. the last commit of an aggregate removed: nothing later links to it
    truncated = original[:-1]
    result = await verify_log(await copied(copy_server, truncated), [checkpoint])
    assert [(f.seq, f.kind) for f in result.findings if f.fails] == [(checkpoint.seq, "checkpoint")]
    assert [f for f in (await verify_log(await copied(copy_server, truncated))).findings if f.fails] == []

    # 2. two commits of different aggregates swapped: each aggregate's chain is intact
    i = next(k for k in range(len(original) - 1) if original[k][0].rsplit(".", 1)[0] != original[k + 1][0].rsplit(".", 1)[0])
    crossed = list(original)
    crossed[i], crossed[i + 1] = crossed[i + 1], crossed[i]
    assert [f for f in (await verify_log(await copied(copy_server, crossed))).findings if f.fails] == []
    assert [(f.seq, f.kind) for f in (await verify_log(await copied(copy_server, crossed), [checkpoint])).findings
            if f.fails] == [(checkpoint.seq, "checkpoint")]

    # 3. a commit rewritten with its chain recomputed (anyone who can write the store files can hash)
    forged = list(original)
    k = next(n for n, (s, _, _) in enumerate(original) if s.endswith(".MessageReceived"))
    subject, headers, body = forged[k]
    body = body.replace(b'"hello"', b'"I never said this"')
    forged[k] = (subject, {**headers, HDR_CHAIN: link(headers[HDR_CHAIN_PREV], subject, headers["Nats-Msg-Id"],
                                                       headers["Nc-Aggregate-Version"], headers["Nc-Event-Types"],
                                                       body)}, body)
    assert [f for f in (await verify_log(await copied(copy_server, forged))).findings if f.fails] == []
    caught = await verify_log(await copied(copy_server, forged), [Checkpoint(checkpoint.seq, checkpoint.digest)])
    assert [(f.seq, f.kind) for f in caught.findings if f.fails] == [(checkpoint.seq, "checkpoint")]


async def test_messages_written_past_the_store_are_reported_unchained_and_still_covered_by_the_next_link(
        nc, js_store, copy_server):
    ref = AggregateRef("test", "counter", "legacy")
    js = nc.jetstream()
    old = new_commit(ref, [CounterIncremented(by=1)], version=0, source="old")
    subject, headers, body = old.encode()  # as written before the chain existed: no chain headers
    ack = await js.publish(subject, body, headers=headers, stream=EVENT_STREAM)
    await js_store.append(new_commit(ref, [CounterIncremented(by=2)], version=1, source="new"), expected_seq=ack.seq)
    result = await verify_log(js_store)
    assert [(f.seq, f.kind) for f in result.findings] == [(1, "unchained")] and result.first_failure is None

    original = await messages(nc)
    original[0] = (original[0][0], original[0][1], original[0][2].replace(b'"by":1', b'"by":9'))
    found = (await verify_log(await copied(copy_server, original))).first_failure
    # the unchained message carries no hash of its own: the commit after it finds its predecessor changed
    assert (found.seq, found.kind) == (2, "altered") and "than the one at seq 1" in found.detail, found
    assert json.loads(original[0][2])[0]["data"] == {"by": 9}
