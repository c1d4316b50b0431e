"""The event-store contract, written once and run against every store implementation (in the style of
eventsourcing's reusable recorder test cases). A concrete test module subclasses :class:`StoreContract`
and provides a ``store`` fixture."""

from __future__ import annotations

import asyncio

import pytest

from events.catalogue.base import EventPayload
from events.envelope import AggregateRef, new_commit
from events.errors import ConcurrencyError


class CounterIncremented(EventPayload):
    context = "test"
    aggregate = "counter"
    by: int


def ref(i: str = "c1") -> AggregateRef:
    return AggregateRef("test", "counter", i)


def commit(aggregate: AggregateRef, version: int, *bys: int, msg_id: str | None = None):
    return new_commit(aggregate, [CounterIncremented(by=b) for b in bys], version=version, source="test", msg_id=msg_id)


class StoreContract:
    async def test_appended_commit_loads_back_with_events_versions_and_order(self, store):
        first = await store.append(commit(ref(), 0, 1, 2), expected_seq=0)
        second = await store.append(commit(ref(), 2, 3), expected_seq=first.seq)
        loaded = await store.load(ref())
        assert [c.seq for c in loaded] == [first.seq, second.seq]
        assert [[e.payload().by for e in c.events] for c in loaded] == [[1, 2], [3]]
        assert [e.aggregateversion for c in loaded for e in c.events] == [1, 2, 3]
        assert loaded[0].events[0].specversion == "1.0" and loaded[0].events[0].subject == "c1"

    async def test_multi_event_save_is_one_commit(self, store):
        await store.append(commit(ref(), 0, 1, 2, 3), expected_seq=0)
        assert await store.last_seq() == 1
        assert len((await store.load(ref()))[0].events) == 3

    async def test_stale_save_raises_concurrency_error_naming_aggregate_and_versions(self, store):
        first = await store.append(commit(ref(), 0, 1), expected_seq=0)
        await store.append(commit(ref(), 1, 2), expected_seq=first.seq)
        with pytest.raises(ConcurrencyError) as info:
            await store.append(commit(ref(), 1, 9), expected_seq=first.seq)
        err = info.value
        assert (err.aggregate, err.expected_version, err.actual_version) == ("test.counter/c1", 1, 2)
        assert "test.counter/c1" in str(err) and "version 1" in str(err) and "version 2" in str(err)
        assert len(await store.load(ref())) == 2

    async def test_new_aggregate_expectation_fails_when_aggregate_exists(self, store):
        await store.append(commit(ref(), 0, 1), expected_seq=0)
        with pytest.raises(ConcurrencyError):
            await store.append(commit(ref(), 0, 1), expected_seq=0)

    async def test_fifty_concurrent_writers_with_same_expectation_exactly_one_wins(self, store):
        base = await store.append(commit(ref(), 0, 1), expected_seq=0)

        async def writer(i: int):
            try:
                await store.append(commit(ref(), 1, i), expected_seq=base.seq)
                return True
            except ConcurrencyError:
                return False

        results = await asyncio.gather(*(writer(i) for i in range(50)))
        assert results.count(True) == 1
        assert len(await store.load(ref())) == 2

    async def test_duplicate_msg_id_is_stored_once(self, store):
        c = commit(ref(), 0, 1, msg_id="wa-3EB0ABC")
        first = await store.append(c, expected_seq=0)
        again = await store.append(c, expected_seq=0)
        assert again.duplicate and again.seq == first.seq and not first.duplicate
        assert await store.last_seq() == 1

    async def test_retried_append_after_aggregate_moved_on_is_a_duplicate_not_a_conflict(self, store):
        c = commit(ref(), 0, 1, msg_id="cmd-1")
        first = await store.append(c, expected_seq=0)
        await store.append(commit(ref(), 1, 2), expected_seq=first.seq)
        again = await store.append(c, expected_seq=0)
        assert again.duplicate and again.seq == first.seq

    async def test_order_per_aggregate_is_preserved_when_interleaved(self, store):
        seqs = {"a": 0, "b": 0}
        for i in range(20):
            key = "a" if i % 3 else "b"
            version = len(await store.load(ref(key)))
            seqs[key] = (await store.append(commit(ref(key), version, i), expected_seq=seqs[key])).seq
        loaded = await store.load(ref("a"))
        assert [c.events[0].payload().by for c in loaded] == [i for i in range(20) if i % 3]
        assert [c.version for c in loaded] == list(range(1, len(loaded) + 1))

    async def test_load_after_seq_returns_only_newer_commits(self, store):
        first = await store.append(commit(ref(), 0, 1), expected_seq=0)
        await store.append(commit(ref(), 1, 2), expected_seq=first.seq)
        newer = await store.load(ref(), after_seq=first.seq)
        assert [c.events[0].payload().by for c in newer] == [2]

    async def test_head_gives_last_seq_and_version_of_the_aggregate(self, store):
        assert (await store.head(ref())).seq == 0
        first = await store.append(commit(ref(), 0, 1, 1), expected_seq=0)
        await store.append(commit(ref("other"), 0, 1), expected_seq=0)
        head = await store.head(ref())
        assert (head.seq, head.version) == (first.seq, 2)

    async def test_ids_with_subject_special_characters_stay_separate(self, store):
        odd, plain = ref("120363.1*2>@g.us x"), ref("120363")
        await store.append(commit(odd, 0, 1), expected_seq=0)
        await store.append(commit(plain, 0, 2), expected_seq=0)
        assert [c.events[0].aggregateid for c in await store.load(odd)] == ["120363.1*2>@g.us x"]
        assert [c.events[0].payload().by for c in await store.load(plain)] == [2]

    async def test_read_from_a_position_resumes_exactly_after_it(self, store):
        seqs = [(await store.append(commit(ref(f"a{i}"), 0, i), expected_seq=0)).seq for i in range(5)]
        read = [c.seq async for c in store.read(after_seq=seqs[1])]
        assert read == seqs[2:]
        assert [c.seq async for c in store.read(after_seq=seqs[-1])] == []

    async def test_read_filters_by_subject(self, store):
        await store.append(commit(ref("x"), 0, 1), expected_seq=0)
        assert [c.seq async for c in store.read(subject_filter="nc.evt.test.counter.*.CounterIncremented")] == [1]
        assert [c.seq async for c in store.read(subject_filter="nc.evt.chat.>")] == []

    async def test_follow_delivers_commits_appended_later(self, store):
        await store.append(commit(ref("a"), 0, 1), expected_seq=0)
        got: list[int] = []

        async def follower():
            async for c in store.read(after_seq=1, follow=True):
                got.append(c.events[0].payload().by)
                if len(got) == 2:
                    return

        task = asyncio.create_task(follower())
        await asyncio.sleep(0.1)
        await store.append(commit(ref("b"), 0, 7), expected_seq=0)
        await store.append(commit(ref("c"), 0, 8), expected_seq=0)
        await asyncio.wait_for(task, 5)
        assert got == [7, 8]
