"""Event stores: the JetStream store (the one store of truth) and an in-memory double for unit tests.

Both implement :class:`events.store.port.EventStore` and pass the same contract suite
(tests/events/store_contract.py).
"""

from events.store.port import AppendResult, EventStore, Head, RawMessage

__all__ = ["AppendResult", "EventStore", "Head", "RawMessage"]
