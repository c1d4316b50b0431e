"""Re-driving dead letters: the service side of ``nanoclaw dlq retry``.

Each service with handlers follows its own dead-letter ledger (``system.deadletter/<service>``,
services/harness/dlq_ledger.py). For each ``DeadLetterRetried`` without an outcome it reads the original
message again from ``NC_EVENTS`` (a direct get by stream sequence: the log is immutable, so the message is
there for good) and hands its events to the service's handlers, as its consumer would (services/harness/
runner.py): same read-model barrier, same idempotency keys for the emits (derived from the causing event, so a
part stored before the first failure is not stored twice within the duplicate window). Then it records:

- ``DeadLetterRetrySucceeded`` when the handlers' emits are stored;
- otherwise the message is dead-lettered again as ``attempt + 1``: a copy on ``nc.dlq.<service>`` with
  ``Nats-Msg-Id dlq:<service>:<seq>:<attempt>`` and a ``MessageDeadLettered`` with that attempt, so every
  attempt is its own dead letter ``<service>:<seq>:<attempt>``. ``RetryLater`` (a channel is down) counts as a
  failure here: the operator retries again later.

On start the ledger is read to its end first, so a retry already answered (before a restart) is not re-driven;
then new requests are handled as they are appended. With several replicas of a service each one re-drives a
request (the emits and the outcome are idempotent within the duplicate window).
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.js.errors import NotFoundError

from events.catalogue.system import DeadLetterRetrySucceeded
from events.catalogue.types import iso_utc
from events.envelope import decode_events, utcnow
from events.errors import InvalidEvent
from services.harness.deadletter import dead_letter
from services.harness.dlq_ledger import ledger_filter, read_ledger
from services.harness.emit import append_emit
from services.harness.logging import bind_event, get_logger
from services.harness.service import Delivery, Emit

RESTART_S = (0.5, 1.0, 2.0, 5.0)
"""Pauses (s) before following the ledger again after a failure to read it (the bus restarting)."""


class Redriver:
    """Args: ``runner``: the service's :class:`~services.harness.runner.ServiceRunner` (its service, connection,
    store, stream and metrics)."""

    def __init__(self, runner: Any):
        self.runner = runner
        self.service = runner.service
        self.log = get_logger("nanoclaw.harness", service=self.service.name)

    async def run(self) -> None:
        """Catch up with the ledger, re-drive what is owed, then follow it; forever (cancel to stop)."""
        failures = 0
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the bus went away: start again from the ledger
                delay = RESTART_S[min(failures, len(RESTART_S) - 1)]
                failures += 1
                self.log.warning("dead-letter retries: ledger unreadable; retrying", error=f"{type(exc).__name__}: {exc}",
                                 retry_in_s=delay)
                await asyncio.sleep(delay)

    async def _follow(self) -> None:
        store = self.runner.store
        ledger = await read_ledger(store, self.service.name)
        for request in list(ledger.pending.values()):
            await self.redrive(request)
        async for raw in store.read_raw(after_seq=ledger.position, subject_filter=ledger_filter(self.service.name),
                                        follow=True):
            try:
                events = decode_events(raw.data)
            except InvalidEvent:
                continue
            before = set(ledger.pending)
            ledger.apply(raw.seq, events)
            for key in [k for k in ledger.pending if k not in before]:
                await self.redrive(ledger.pending[key])

    async def redrive(self, request: dict[str, Any]) -> None:
        """Handle the original message of one ``DeadLetterRetried`` again and record the outcome."""
        seq, attempt = int(request["stream_seq"]), int(request["attempt"])
        name = self.service.name
        try:
            msg = await self.runner.nc.jetstream().get_msg(self.runner.stream, seq, direct=True)
        except NotFoundError:
            await self._failed_again(seq, attempt, request.get("subject", "?"), b"", None,
                                     f"the original message {seq} is not in {self.runner.stream}")
            return
        subject = msg.subject or request.get("subject", "?")
        try:
            await self._handle(msg.data, seq, subject)
        except (nats.errors.ConnectionClosedError, nats.errors.NoRespondersError) as exc:
            raise exc  # the bus, not the message: the ledger is followed again once it is back
        except Exception as exc:  # noqa: BLE001 - any failure of the message is a new dead letter
            await self._failed_again(seq, attempt, subject, msg.data, msg.headers, f"{type(exc).__name__}: {exc}")
            return
        done = DeadLetterRetrySucceeded(service=name, stream_seq=seq, attempt=attempt, at=iso_utc(utcnow()))
        await append_emit(self.runner.store, Emit.append(name, done), source=name,
                          msg_id=f"dlq-retry-ok:{name}:{seq}:{attempt}")
        self.log.info("dead letter retried and handled", dead_letter=f"{name}:{seq}:{attempt}", subject=subject)

    async def _handle(self, data: bytes, seq: int, subject: str) -> None:
        """The consumer's handling of one commit (services/harness/runner.py ``_handle``), without ack/nak.

        Raises:
            PoisonMessage: not a valid commit; whatever a handler or an append raised.
        """
        from services.harness.runner import decode_commit  # the runner imports this module

        name = self.service.name
        wanted = [(ce, p) for ce, p in decode_commit(data) if ce.eventtype in self.service.handlers]
        if wanted and self.service.readmodel is not None:
            await self.service.readmodel.wait_for(seq)
        for ce, payload in wanted:
            with bind_event(name, ce.eventtype, ce.correlationid):
                emits = await self.service.handlers[ce.eventtype](Delivery(ce, payload, seq, subject, 1), self.service.deps)
                for i, emit in enumerate(emits or ()):
                    await append_emit(self.runner.store, emit, source=name, msg_id=f"{ce.id}:{name}:{i}", causation=ce)

    async def _failed_again(self, seq: int, attempt: int, subject: str, data: bytes, headers: dict[str, str] | None,
                            error: str) -> None:
        """Dead-letter the message again as ``attempt + 1`` (services/harness/deadletter.py)."""
        name, nxt = self.service.name, attempt + 1
        notice = await dead_letter(self.runner.nc, self.runner.store, service=name, subject=subject, seq=seq, data=data,
                                   headers=headers, deliveries=1, error=error, attempt=nxt)
        self.runner.metrics.dead_lettered.labels(name).inc()
        self.log.error("retried dead letter failed again", dead_letter=f"{name}:{seq}:{nxt}", subject=subject,
                       error=notice.error)
