"""The inbound buffer: every inbound event is written to disk first, then published to JetStream in order.

A message counts as handled only once JetStream has acknowledged its event; until then it stays in the
buffer (SQLite, ``<data_dir>/gateway/inbound.db``), so a NATS outage or a gateway restart loses nothing.
The buffer is bounded (``max_rows``): past it, :meth:`put` raises :class:`BufferFull` and the channel says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from events.catalogue.base import payload_class
from events.envelope import AggregateRef
from events.errors import EventStoreError
from events.store.port import EventStore
from services.harness.runner import append_emit
from services.harness.service import Emit

log = logging.getLogger("nanoclaw.gateway.buffer")


class BufferFull(Exception):
    """The on-disk inbound buffer reached its limit (NATS has been unreachable for long)."""


@dataclass
class InboundBuffer:
    path: Path
    max_rows: int = 10_000
    retry_max_s: float = 10.0

    def __post_init__(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a buffered message must survive a power cut
        self.db.execute("CREATE TABLE IF NOT EXISTS inbound (id INTEGER PRIMARY KEY AUTOINCREMENT, event_type TEXT NOT NULL,"
                        " aggregate_id TEXT NOT NULL, msg_id TEXT NOT NULL, payload TEXT NOT NULL, new_aggregate INTEGER NOT NULL)")
        self._wake = asyncio.Event()
        self.published = 0

    def put(self, aggregate_id: str, payload, msg_id: str, *, new_aggregate: bool = False) -> int:
        """Store one event for publishing (idempotency key ``msg_id``). Returns the buffer row id.

        ``new_aggregate``: the event creates its aggregate (e.g. one inbound message). Then a repeat is
        recognised by its ``msg_id`` even after the stream's duplicate window (the store finds it on the
        aggregate), so a message redelivered days later is still stored once.

        Raises:
            BufferFull: ``max_rows`` events are waiting already.
        """
        if self.pending() >= self.max_rows:
            raise BufferFull(f"inbound buffer {self.path} holds {self.max_rows} unpublished events; is NATS down?")
        cur = self.db.execute("INSERT INTO inbound(event_type, aggregate_id, msg_id, payload, new_aggregate) VALUES (?,?,?,?,?)",
                              (type(payload).__name__, aggregate_id, msg_id, payload.model_dump_json(), int(new_aggregate)))
        self._wake.set()
        return int(cur.lastrowid)

    def pending(self) -> int:
        return self.db.execute("SELECT count(*) FROM inbound").fetchone()[0]

    async def drain_forever(self, store: EventStore, source: str = "gateway") -> None:
        """Publish buffered events oldest first; on a store failure wait (1 s doubling up to ``retry_max_s``)
        and retry the same event, so order is kept."""
        delay = 1.0
        while True:
            row = self.db.execute("SELECT id, event_type, aggregate_id, msg_id, payload, new_aggregate FROM inbound "
                                  "ORDER BY id LIMIT 1").fetchone()
            if row is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            row_id, event_type, aggregate_id, msg_id, payload_json, new_aggregate = row
            payload = payload_class(event_type).model_validate(json.loads(payload_json))
            ref = AggregateRef.for_payload(payload, aggregate_id)
            emit = Emit(ref, (payload,), 0, msg_id, 0) if new_aggregate else Emit(ref, (payload,), None, msg_id)
            try:
                await append_emit(store, emit, source=source, msg_id=msg_id)
            except EventStoreError as exc:
                log.warning("cannot publish buffered %s (%d waiting): %s; retrying in %.0fs", event_type, self.pending(), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            delay = 1.0
            self.db.execute("DELETE FROM inbound WHERE id = ?", (row_id,))
            self.published += 1

    def close(self) -> None:
        self.db.close()
