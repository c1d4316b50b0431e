"""Load and save aggregates through an :class:`EventStore`, with an in-process cache.

Loading from JetStream costs a server-side scan that grows with interleaving (≈5 ms for 10 events among 100k;
stack-notes §11.7), so loaded aggregates are cached. A cached copy is checked against the aggregate's last
stored sequence (a direct get of the last message, ≈0.2 ms) and only newer commits are read. Measured in
bench/ (docs/benchmarks.md).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import TypeVar

from events.aggregate import NcAggregate, pending_payloads, replay
from events.envelope import CloudEvent, new_commit
from events.store.port import AppendResult, EventStore

A = TypeVar("A", bound=NcAggregate)


class Repository:
    """Args:
        store: the event store.
        source: the writing service's name (CloudEvents ``source``).
        cache_size: aggregates kept in memory (LRU).
    """

    def __init__(self, store: EventStore, source: str, cache_size: int = 10_000):
        self.store = store
        self.source = source
        self._cache: OrderedDict[tuple[type, str], NcAggregate] = OrderedDict()
        self._cache_size = cache_size

    async def get(self, cls: type[A], aggregate_id: str) -> A | None:
        """The aggregate's current state, or None if it has no events."""
        key = (cls, aggregate_id)
        ref = cls.ref(aggregate_id)
        cached = self._cache.get(key)
        if cached is not None:
            if (await self.store.head(ref)).seq == cached.last_seq:
                self._cache.move_to_end(key)
                return copy.deepcopy(cached)  # callers mutate; the cache must stay as stored
            agg = replay(cls, await self.store.load(ref, after_seq=cached.last_seq), copy.deepcopy(cached))
        else:
            agg = replay(cls, await self.store.load(ref))
        if agg is not None:
            self._remember(key, copy.deepcopy(agg))
        return agg

    async def save(
        self, aggregate: NcAggregate, *, msg_id: str | None = None, causation: CloudEvent | None = None
    ) -> AppendResult | None:
        """Store the aggregate's pending events as one commit. Returns None when nothing was pending.

        Raises:
            ConcurrencyError: another save got there first; reload with :meth:`get` and retry.
        """
        payloads = pending_payloads(aggregate)
        if not payloads:
            return None
        base_version = aggregate.version - len(payloads)
        commit = new_commit(type(aggregate).ref(aggregate.id), payloads, version=base_version, source=self.source,
                            msg_id=msg_id, causation=causation)
        result = await self.store.append(commit, expected_seq=aggregate.last_seq)
        aggregate.last_seq = result.seq
        if not result.duplicate:
            self._remember((type(aggregate), aggregate.id), copy.deepcopy(aggregate))
        return result

    def _remember(self, key: tuple[type, str], agg: NcAggregate) -> None:
        self._cache[key] = agg
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
