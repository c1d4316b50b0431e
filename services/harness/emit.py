"""Append a handler's :class:`~services.harness.service.Emit` to the event store."""

from __future__ import annotations

from events.envelope import CloudEvent, new_commit
from events.errors import ConcurrencyError
from events.store.port import AppendResult, EventStore
from services.harness.service import Emit

_APPEND_RETRIES = 5


async def append_emit(store: EventStore, emit: Emit, *, source: str, msg_id: str,
                      causation: CloudEvent | None = None) -> AppendResult:
    """Append one :class:`Emit`. With ``expected_seq=None`` the commit goes after the aggregate's current head
    (re-read on a race).

    Raises:
        ConcurrencyError: the emit's expectation is stale (the handler decided on old state).
    """
    for attempt in range(_APPEND_RETRIES):
        seq, version = emit.expected_seq, emit.base_version
        if seq is None or version is None:
            head = await store.head(emit.aggregate)
            seq = head.seq if seq is None else seq
            version = head.version if version is None else version
        commit = new_commit(emit.aggregate, list(emit.payloads), version=version, source=source,
                            msg_id=emit.msg_id or msg_id, causation=causation)
        try:
            return await store.append(commit, expected_seq=seq)
        except ConcurrencyError:
            if emit.expected_seq is not None or attempt == _APPEND_RETRIES - 1:
                raise
    raise AssertionError("unreachable")
