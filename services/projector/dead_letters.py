"""The projections service records each message of the log its read models skipped: once, in the log.

Every follower of the log skips a message that is not a valid commit, deterministically and quietly (a log
line). Recording it as a ``MessageDeadLettered`` event (with a copy on ``nc.dlq.projections``) is left to one
follower, the projections service, which follows every event with a durable position. "Once" does not rest on
the duplicate window: the skipped messages are rows of the read model (``skipped_messages``, written with the
tracking position), the recorded ones are read back from the log at start, and only the difference is
recorded. A crash between the two records it at the next start; a rebuilt database does not record it again.
"""

from __future__ import annotations

import asyncio
import sqlite3

from nats.aio.client import Client

from events.store.port import EventStore
from events.subjects import EVENT_STREAM
from projections.dead_letters import dead_lettered
from projections.sqlite import SkippedMessage, skipped_messages
from services.harness.deadletter import dead_letter
from services.harness.logging import get_logger

RETRY_MAX_S = 30.0
"""Longest pause (s) between attempts while NATS cannot take a record."""

log = get_logger("nanoclaw.projections", service="projections")


class DeadLetterRecorder:
    """Args:
        nc: the service's NATS connection (the copy goes to ``NC_DLQ``, the original is read by direct get).
        store: the event store (the ``MessageDeadLettered`` events).
        db: the projections service's read-model database, shared with its runner (same event loop).
        service: the ledger to record on (``system.deadletter/<service>``).
    """

    def __init__(self, nc: Client, store: EventStore, db: sqlite3.Connection, service: str = "projections"):
        self.nc, self.store, self.db, self.service = nc, store, db, service
        self.wake = asyncio.Event()
        """Set by the runner's ``on_skip``: new rows in ``skipped_messages``."""

    async def run(self) -> None:
        """Record what is not recorded yet, then again whenever :attr:`wake` is set; runs until cancelled.
        A failed record (NATS unreachable) is retried with a pause that doubles up to :data:`RETRY_MAX_S`."""
        recorded: set[int] | None = None
        delay = 1.0
        while True:
            self.wake.clear()  # before reading the rows: a skip committed meanwhile sets it again
            try:
                if recorded is None:
                    recorded = set(await dead_lettered(self.store, service=self.service))
                for skipped in skipped_messages(self.db):
                    if skipped.seq not in recorded:
                        await self._record(skipped)
                        recorded.add(skipped.seq)
                delay = 1.0
            except Exception as exc:  # noqa: BLE001 - the record is in SQLite; try again later rather than die
                log.warning("cannot record skipped messages yet; retrying", error=f"{type(exc).__name__}: {exc}",
                            retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            await self.wake.wait()

    async def _record(self, skipped: SkippedMessage) -> None:
        original = await self.nc.jetstream().get_msg(EVENT_STREAM, skipped.seq, direct=True)
        notice = await dead_letter(self.nc, self.store, service=self.service, subject=skipped.subject,
                                   seq=skipped.seq, data=original.data or b"", headers=original.headers,
                                   deliveries=1, error="; ".join(skipped.reasons))
        log.error("message of the log skipped by projections; dead-lettered", subject=skipped.subject,
                  seq=skipped.seq, error=notice.error, projections=list(skipped.projections),
                  dead_letter_seq=notice.dead_letter_seq)
