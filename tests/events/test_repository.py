"""Aggregates on eventsourcing's domain layer, saved and loaded through the repository."""

from __future__ import annotations

import pytest
from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.base import EventPayload
from events.errors import ConcurrencyError
from events.repository import Repository
from events.store.memory import InMemoryEventStore
from tests.events.store_contract import CounterIncremented  # noqa: F401  (registers the payload)


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
