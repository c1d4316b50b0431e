"""Aggregates on eventsourcing's domain layer, saved and loaded through the repository."""

from __future__ import annotations

import json

import pytest
from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.base import EventPayload
from events.errors import ConcurrencyError
from events.repository import Repository
from events.envelope import HDR_VERSION, AggregateRef, new_commit
from events.store.memory import InMemoryEventStore
from events.store.port import Head
from events.subjects import EVENT_STREAM
from services.harness.emit import append_emit
from services.harness.service import Emit
from tests.events.store_contract import CounterIncremented  # noqa: F401  (registers the payload)
from tests.harness.test_runner import PingSent  # noqa: F401  (registers the payload)
from tests.poison import KINDS, bad_bodies


class CounterOpened(EventPayload):
    context = "test"
    aggregate = "counter"
    name: str


class Counter(NcAggregate):
    CONTEXT, TYPE = "test", "counter"

    @staticmethod
    def create_id(name: str) -> str:
        return name

    @event("CounterOpened")
    def __init__(self, name: str):
        self.name = name
        self.total = 0

    @event("CounterIncremented")
    def increment(self, by: int) -> None:
        self.total += by


@pytest.fixture(params=["memory", "jetstream"])
def store(request):
    return InMemoryEventStore() if request.param == "memory" else request.getfixturevalue("js_store")


async def test_a_saved_aggregate_loads_back_with_state_and_version(store):
    repo = Repository(store, "test")
    c = Counter(name="jid@g.us")
    c.increment(by=2)
    c.increment(by=3)
    result = await repo.save(c)
    loaded = await Repository(store, "test").get(Counter, "jid@g.us")
    assert (loaded.name, loaded.total, loaded.version, loaded.last_seq) == ("jid@g.us", 5, 3, result.seq)
    assert len(await store.load(Counter.ref("jid@g.us"))) == 1  # one save, one commit


async def test_a_stale_aggregate_cannot_be_saved(store):
    repo_a, repo_b = Repository(store, "a"), Repository(store, "b")
    await repo_a.save(Counter(name="c"))
    first, second = await repo_a.get(Counter, "c"), await repo_b.get(Counter, "c")
    first.increment(by=1)
    await repo_a.save(first)
    second.increment(by=10)
    with pytest.raises(ConcurrencyError, match="expected version 1"):
        await repo_b.save(second)
    fresh = await repo_b.get(Counter, "c")
    assert (fresh.total, fresh.version) == (1, 2)


async def test_the_cache_returns_copies_and_catches_up_with_other_writers(store):
    repo, other = Repository(store, "a"), Repository(store, "b")
    await repo.save(Counter(name="c"))
    mine = await repo.get(Counter, "c")
    mine.increment(by=99)  # not saved: must not leak into the cache
    theirs = await other.get(Counter, "c")
    theirs.increment(by=4)
    await other.save(theirs)
    again = await repo.get(Counter, "c")
    assert (again.total, again.version) == (4, 2)


async def test_nothing_pending_saves_nothing(store):
    repo = Repository(store, "a")
    await repo.save(Counter(name="c"))
    c = await repo.get(Counter, "c")
    assert await repo.save(c) is None
    assert await store.last_seq() == 1


async def test_a_retried_save_with_the_same_msg_id_is_stored_once(store):
    repo = Repository(store, "a")
    c = Counter(name="c")
    first = await repo.save(c, msg_id="cmd-42")
    again = Counter(name="c")
    second = await repo.save(again, msg_id="cmd-42")
    assert second.duplicate and second.seq == first.seq


@pytest.mark.parametrize("kind", KINDS)
async def test_a_bad_message_on_an_aggregates_own_subject_is_skipped_by_its_loads_saves_and_appends(nc, js_store, kind):
    repo = Repository(js_store, "a")
    c = Counter(name="c")
    c.increment(by=2)
    await repo.save(c)
    like = new_commit(Counter.ref("c"), [CounterIncremented(by=1)], version=2, source="test")
    subject, _, _ = like.encode()
    bad = await nc.jetstream().publish(subject, bad_bodies(like, missing="by")[kind], stream=EVENT_STREAM,
                                       headers={HDR_VERSION: "99"})  # a forged version as well
    for fresh in (Repository(js_store, "b"), repo):  # a cold load, and the cached aggregate catching up
        loaded = await fresh.get(Counter, "c")
        assert (loaded.total, loaded.version, loaded.last_seq) == (2, 2, bad.seq), kind
    assert await js_store.head(Counter.ref("c")) == Head(bad.seq, 2)
    loaded.increment(by=3)
    await repo.save(loaded)
    await append_emit(js_store, Emit.append("c", CounterIncremented(by=4)), source="a", msg_id="four")
    again = await Repository(js_store, "c").get(Counter, "c")
    assert (again.total, again.version) == (2 + 3 + 4, 4)


async def test_a_valid_commit_of_another_aggregates_events_on_its_subject_is_skipped_whole(nc, js_store):
    repo = Repository(js_store, "a")
    await repo.save(Counter(name="c"))
    stranger = new_commit(AggregateRef("test", "counter", "c"), [CounterIncremented(by=1)], version=1, source="x")
    subject, headers, body = stranger.encode()
    events = json.loads(body)
    events[0]["eventtype"] = "PingSent"  # a catalogued event, of an aggregate Counter is not
    await nc.jetstream().publish(subject, json.dumps(events).encode(), headers=headers, stream=EVENT_STREAM)
    loaded = await Repository(js_store, "b").get(Counter, "c")
    loaded.increment(by=5)
    await repo.save(loaded)
    assert (await Repository(js_store, "c").get(Counter, "c")).total == 5
