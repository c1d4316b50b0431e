"""The thin NATS adapter that runs a :class:`~services.harness.service.Service`.

- One durable pull consumer per service (``svc_<name>``) filtered to the event types it handles; explicit
  ack only after the handler's emits are stored; a bounded ``max_deliver``.
- A message that still fails on its last delivery, or that is not a valid commit (not a CloudEvents batch, an
  event type not in the catalogue, a payload that does not validate: any event of the commit, handled or not,
  since a commit is atomic), is copied to the dead-letter stream (``nc.dlq.<service>``) with the error in
  headers, a ``MessageDeadLettered`` event is appended, and the message is acked: it is kept, never dropped,
  the service keeps running, and the durable consumer's ack means it is dead-lettered once, not on a restart.
- Nothing a message does ends the consume task: a dead letter that cannot be stored (NC_DLQ unavailable) leaves
  the message unacked, kept in progress and retried with backoff while later messages are handled; any other
  failure to settle a message is logged and the message is redelivered.
- Graceful stop: the fetched batch is finished and acked, then tasks are cancelled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from events.catalogue import EventPayload, payload_class
from events.envelope import CloudEvent, decode_events
from events.errors import ConcurrencyError, EventStoreError, InvalidEvent, UnknownEventType
from events.store.port import EventStore
from events.subjects import EVENT_STREAM, event_filter
from events.tasks import cancel_and_wait
from services.harness.config import HarnessSettings
from services.harness.deadletter import dead_letter
from services.harness.emit import append_emit
from services.harness.logging import bind_event, get_logger
from services.harness.metrics import Metrics
from services.harness.pull import PullConsumer
from services.harness.redrive import Redriver
from services.harness.requests import RequestServer
from services.harness.service import Delivery, RetryLater, Service


class PoisonMessage(Exception):
    """The message can never be handled (unparseable, unknown or invalid event): dead-letter it at once."""


def decode_commit(body: bytes) -> list[tuple[CloudEvent, EventPayload]]:
    """Every event of a commit body with its validated payload, or nothing: a commit is handled whole.

    Raises:
        PoisonMessage: the body is not a CloudEvents batch, or an event's type is not in the catalogue, or its
            payload does not validate (the message says which).
    """
    try:
        return [(ce, ce.payload()) for ce in decode_events(body)]
    except (InvalidEvent, UnknownEventType) as exc:
        raise PoisonMessage(str(exc)) from exc


def consumer_name(service: str) -> str:
    return f"svc_{service}"


@dataclass
class ServiceRunner:
    service: Service
    nc: Client
    store: EventStore
    settings: HarnessSettings = field(default_factory=HarnessSettings)
    metrics: Metrics = field(default_factory=Metrics)
    stream: str = EVENT_STREAM
    fetch_wait_s: float = 1.0
    """How long one pull request waits for a message; it returns as soon as one arrives (also bounds stop())."""

    def __post_init__(self) -> None:
        self.log = get_logger("nanoclaw.harness", service=self.service.name)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._requests = RequestServer(self.service, self.nc, self.store)
        self.ready = False
        self._unsettled: dict[int, tuple[Msg, str]] = {}
        """Stream seq → (message, error) of dead letters not stored yet (:meth:`_retry_dead_letters`)."""
        self._unsettled_retry = (0.0, 1.0)  # (monotonic time of the next attempt, backoff in s)

    @property
    def healthy(self) -> bool:
        return self.nc.is_connected and all(not t.done() for t in self._tasks)

    async def ensure_consumer(self) -> None:
        """Create (or update) the service's durable consumer. Idempotent."""
        if not self.service.handlers:
            return
        js = self.nc.jetstream()
        # Filter by aggregate, not by event type: a commit's subject names only its *first* event, so a
        # handled event later in a commit (RunDispatched after RunReleased) would be missed. The handler map
        # picks the wanted events out of each delivered commit.
        filters = sorted({event_filter(*self._event_context(t)[:2]) for t in self.service.handlers})
        config = api.ConsumerConfig(
            name=consumer_name(self.service.name),
            durable_name=consumer_name(self.service.name),
            deliver_policy=api.DeliverPolicy.ALL,  # a new service catches up on history (e.g. groups added before `up`)
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            max_deliver=self.service.max_deliver or self.settings.max_deliver,
            filter_subjects=filters,
            max_ack_pending=1000,
        )
        await js.add_consumer(self.stream, config)

    @staticmethod
    def _event_context(event_type: str) -> tuple[str, str, str]:
        cls = payload_class(event_type)
        return cls.context, cls.aggregate, event_type

    async def start(self) -> None:
        if self.service.readmodel is not None:
            await self.service.readmodel.start()
        await self.ensure_consumer()
        if self.service.readmodel is not None:
            # Start-up decisions (recovery) must see everything already in the log.
            await self.service.readmodel.wait_for(await self.store.last_seq())
        if self.service.on_start:
            for i, emit in enumerate(await self.service.on_start(self.service.deps)):
                await append_emit(self.store, emit, source=self.service.name, msg_id=f"start:{self.service.name}:{time.time_ns()}:{i}")
        if self.service.handlers:
            self._tasks.append(asyncio.create_task(self._consume(), name=f"{self.service.name}-consume"))
            # `nanoclaw dlq retry`: the service re-handles its own dead letters (services/harness/redrive.py).
            self._tasks.append(asyncio.create_task(Redriver(self).run(), name=f"{self.service.name}-redrive"))
        await self._requests.start()
        for task in self.service.tasks:
            t = asyncio.create_task(task(self.service.deps), name=f"{self.service.name}-task")
            t.add_done_callback(self._task_ended)
            self._tasks.append(t)
        self.ready = True
        self.log.info("service started", handlers=sorted(self.service.handlers), requests=sorted(self.service.requests))

    def _task_ended(self, task: asyncio.Task) -> None:
        """A service task should run until stopped: say loudly when one ends early (the service turns unhealthy)."""
        if task.cancelled() or self._stopping.is_set():
            return
        exc = task.exception()
        self.log.error("service task ended unexpectedly; the service is unhealthy", task=task.get_name(),
                       error=f"{type(exc).__name__}: {exc}" if exc else "returned")

    async def stop(self) -> None:
        self._stopping.set()
        self.ready = False
        await self._requests.stop()
        consume = [t for t in self._tasks if t.get_name().endswith("-consume")]
        if consume:  # the pull loop ends by itself after the batch in hand: let it ack what it handled
            await asyncio.wait(consume, timeout=self.settings.ack_wait_s)
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self.service.readmodel is not None:
            await self.service.readmodel.stop()
        self.log.info("service stopped")

    async def _consume(self) -> None:
        # Not nats-py's PullSubscription.fetch: a late 408 of its previous request left a lingering pull request
        # open, and messages it captured reached the handler up to 1 s late (services/harness/pull.py).
        puller = PullConsumer(self.nc, self.stream, consumer_name(self.service.name))
        backoff = 0.2
        try:
            while not self._stopping.is_set():
                try:
                    if not puller.started:
                        await puller.start()
                    msgs = await puller.fetch(self.settings.fetch_batch, self.fetch_wait_s)
                    backoff = 0.2
                except (nats.errors.ConnectionClosedError, nats.errors.NoRespondersError, nats.js.errors.APIError,
                        nats.errors.Error, OSError) as exc:
                    self.log.warning("fetch failed; retrying", error=f"{type(exc).__name__}: {exc}", retry_in_s=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                for msg in msgs:
                    await self._settle(msg)
                if self._unsettled:
                    await self._retry_dead_letters()
        finally:
            await puller.close()

    async def _settle(self, msg: Msg) -> None:
        """:meth:`_handle`, and whatever it raises is logged, never the end of the consume task."""
        try:
            await self._handle(msg)
        except Exception as exc:  # noqa: BLE001 - e.g. an ack or nak lost with the connection
            self.log.error("message not settled; it will be redelivered", subject=msg.subject,
                           error=f"{type(exc).__name__}: {exc}", exc_info=True)
            try:
                await msg.nak(delay=(self.settings.retry_delays_s or [1.0])[-1])
            except Exception:  # noqa: BLE001 - no connection: the server redelivers after ack_wait anyway
                pass

    async def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        self.metrics.lag.labels(self.service.name).set(meta.num_pending)
        started = time.perf_counter()
        event_type = "?"
        try:
            wanted = [(ce, payload) for ce, payload in decode_commit(msg.data) if ce.eventtype in self.service.handlers]
            if wanted and self.service.readmodel is not None:
                await self.service.readmodel.wait_for(meta.sequence.stream)
            for ce, payload in wanted:
                handler = self.service.handlers[ce.eventtype]
                event_type = ce.eventtype
                with bind_event(self.service.name, ce.eventtype, ce.correlationid):
                    emits = await handler(Delivery(ce, payload, meta.sequence.stream, msg.subject, meta.num_delivered),
                                         self.service.deps)
                    for i, emit in enumerate(emits or ()):
                        await append_emit(self.store, emit, source=self.service.name,
                                          msg_id=f"{ce.id}:{self.service.name}:{i}", causation=ce)
            await msg.ack()
            self.metrics.handled.labels(self.service.name, event_type).inc()
        except PoisonMessage as exc:
            await self._dead_letter(msg, f"not a valid commit: {exc}")
        except RetryLater as exc:
            self.log.info("handler asked to retry later", subject=msg.subject, seq=meta.sequence.stream,
                          reason=str(exc), retry_in_s=exc.delay_s)
            await msg.nak(delay=exc.delay_s)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
            self.metrics.failed.labels(self.service.name, event_type).inc()
            if meta.num_delivered >= self.settings.max_deliver:
                await self._dead_letter(msg, f"{type(exc).__name__}: {exc}")
            else:
                delays = self.settings.retry_delays_s or [1.0]
                delay = delays[min(meta.num_delivered - 1, len(delays) - 1)]
                level = "info" if isinstance(exc, ConcurrencyError) else "warning"
                getattr(self.log, level)("handler failed; will retry", subject=msg.subject, seq=meta.sequence.stream,
                                         delivery=meta.num_delivered, retry_in_s=delay, error=str(exc),
                                         exc_info=level == "warning" and not isinstance(exc, EventStoreError))
                await msg.nak(delay=delay)
        finally:
            self.metrics.latency.labels(self.service.name).observe(time.perf_counter() - started)

    async def _dead_letter(self, msg: Msg, error: str) -> None:
        meta = msg.metadata
        try:
            notice = await dead_letter(self.nc, self.store, service=self.service.name, subject=msg.subject,
                                       seq=meta.sequence.stream, data=msg.data, headers=msg.headers,
                                       deliveries=meta.num_delivered, error=error)
        except Exception as exc:  # noqa: BLE001 - NC_DLQ or the log unavailable: keep the message, try again
            # Not nak'ed: on its last delivery the server would not deliver it again, and it would be neither
            # handled nor dead-lettered. Kept unacked (in progress) until the dead letter is stored.
            self._unsettled[meta.sequence.stream] = (msg, error)
            self.log.error("dead letter not stored; the message is kept and retried", subject=msg.subject,
                           seq=meta.sequence.stream, error=f"{type(exc).__name__}: {exc}")
            return
        self._unsettled.pop(meta.sequence.stream, None)
        await msg.ack()
        self.metrics.dead_lettered.labels(self.service.name).inc()
        self.log.error("message dead-lettered", subject=msg.subject, seq=notice.stream_seq, deliveries=notice.deliveries,
                       error=notice.error, dead_letter_seq=notice.dead_letter_seq)

    async def _retry_dead_letters(self) -> None:
        """Try the dead letters not stored yet again, with a pause doubling from 1 s up to 30 s between
        attempts; meanwhile tell the server each message is in progress (so ``ack_wait`` does not redeliver it)."""
        loop = asyncio.get_running_loop()
        due, backoff = self._unsettled_retry
        for msg, error in list(self._unsettled.values()):
            if loop.time() < due:
                try:
                    await msg.in_progress()
                except Exception:  # noqa: BLE001 - no connection: a redelivery brings it back
                    pass
                continue
            await self._dead_letter(msg, error)
        if loop.time() >= due:
            failed = bool(self._unsettled)
            self._unsettled_retry = (loop.time() + backoff, min(backoff * 2, 30.0) if failed else 1.0)
