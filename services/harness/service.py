"""What a service is: pure handlers plus a declaration the adapter (:mod:`services.harness.runner`) runs.

A handler receives one event and the service's dependency object (read ports only: aggregate loads,
read models, clocks) and returns the events to append as :class:`Emit` values. It performs no writes and
no network I/O of its own; the adapter appends what it returns (idempotently: message ids are derived from
the causing event), then acks. Channel I/O that is not the bus (WhatsApp, HTTP, Docker) lives in the
service's ``tasks`` (long-running coroutines started with the service).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from events.aggregate import NcAggregate, pending_payloads
from events.catalogue.base import EventPayload
from events.envelope import AggregateRef, CloudEvent


@dataclass(frozen=True)
class Emit:
    """Events to append to one aggregate as one commit.

    ``expected_seq``: the aggregate's last commit seq the decision was based on (0: must be new); ``None``
    appends after whatever the aggregate holds (for facts that do not depend on its state).
    ``msg_id``: the idempotency key; by default derived from the causing event, the service and the emit's
    position, so a redelivered message produces the same keys.
    ``base_version``: the aggregate version before these events, when the handler knows it (else read from
    the aggregate's head).
    """

    aggregate: AggregateRef
    payloads: tuple[EventPayload, ...]
    expected_seq: int | None = None
    msg_id: str | None = None
    base_version: int | None = None

    @classmethod
    def new(cls, aggregate_id: str, *payloads: EventPayload, msg_id: str | None = None) -> "Emit":
        """Events that create an aggregate (it must not exist yet)."""
        return cls(AggregateRef.for_payload(payloads[0], aggregate_id), payloads, 0, msg_id, 0)

    @classmethod
    def append(cls, aggregate_id: str, *payloads: EventPayload, msg_id: str | None = None) -> "Emit":
        """Facts appended to an aggregate whatever its current state."""
        return cls(AggregateRef.for_payload(payloads[0], aggregate_id), payloads, None, msg_id)

    @classmethod
    def of(cls, aggregate: NcAggregate, msg_id: str | None = None) -> "Emit | None":
        """The pending events of an aggregate loaded and changed by a handler (None if nothing changed)."""
        payloads = pending_payloads(aggregate)
        if not payloads:
            return None
        return cls(type(aggregate).ref(aggregate.id), tuple(payloads), aggregate.last_seq, msg_id,
                   aggregate.version - len(payloads))


@dataclass(frozen=True)
class Delivery:
    """One event as delivered to a handler."""

    event: CloudEvent
    payload: EventPayload
    stream_seq: int
    subject: str
    deliveries: int = 1


@dataclass(frozen=True)
class Request:
    """One NATS request to a service (the agents' IPC tools). ``subject`` tokens carry the requester's
    identity (e.g. ``nc.ipc.<folder>.<tool>``: the server lets a run publish only under its own folder), so
    handlers authorise from ``subject``, never from ``data``. ``run_id``: the sandbox run that asked, as the
    server attests it (services/harness/replies.py); None for a client of the services' own account."""

    subject: str
    data: dict[str, Any]
    request_id: str
    run_id: str | None = None

    def token(self, index: int) -> str:
        return self.subject.split(".")[index]


@dataclass(frozen=True)
class Reply:
    """A request's answer: ``{"ok": true, "result": …}`` or ``{"ok": false, "error": "…"}``, plus the events
    to append first (the reply is sent only after they are stored, so "ok" means it happened). ``then``, if
    set, is awaited after storing and its reply is sent instead (to report an outcome that follows, such as a
    delivery receipt)."""

    ok: bool
    result: Any = None
    error: str | None = None
    emits: Sequence[Emit] = ()
    then: "Callable[[], Awaitable[Reply]] | None" = None  # awaited after the emits are stored (e.g. a receipt)
    refused: bool = False
    """A security decision (the requester may not do this), not a bad argument: the harness records it as a
    ``SandboxRequestRefused`` event besides answering with ``error``."""

    @classmethod
    def success(cls, result: Any, *emits: Emit | None) -> "Reply":
        return cls(True, result, None, tuple(e for e in emits if e is not None))

    @classmethod
    def failure(cls, error: str) -> "Reply":
        """A request that cannot be done as asked (bad or missing arguments, unknown task): an error answer only."""
        return cls(False, None, error)

    @classmethod
    def refusal(cls, error: str) -> "Reply":
        """A request the requester is not allowed to make (another group's chat or task, a main-only tool): an
        error answer and a ``SandboxRequestRefused`` event (an audit trail of denied operations)."""
        return cls(False, None, error, refused=True)

    def body(self) -> dict[str, Any]:
        return {"ok": True, "result": self.result} if self.ok else {"ok": False, "error": self.error}


Handler = Callable[[Delivery, Any], Awaitable[Sequence[Emit]]]
RequestHandler = Callable[[Request, Any], Awaitable[Reply]]
Task = Callable[[Any], Awaitable[None]]


@dataclass
class Service:
    """A service declaration.

    Args:
        name: service name (``[a-z][a-z0-9_-]*``); also names its durable consumer ``svc_<name>``.
        handlers: event type → handler.
        deps: the dependency object passed to every handler and task.
        tasks: long-running coroutines (channel connections, HTTP servers, timers) started with the service.
        on_start: called once before consuming (e.g. start-up recovery); returns emits like a handler.
        readmodel: the service's private read model (:class:`projections.readmodel.LocalReadModel`): started
            first, and caught up to each delivered event before its handler runs.
        max_deliver: server-side delivery limit for this service's consumer (None: the harness setting; -1:
            unlimited, for services whose handlers raise :class:`RetryLater` while a channel is down).
        requests: NATS subject pattern (wildcards allowed) → request handler; served in the queue group
            ``svc_<name>`` so replicas share the load.
    """

    name: str
    handlers: dict[str, Handler] = field(default_factory=dict)
    deps: Any = None
    tasks: list[Task] = field(default_factory=list)
    on_start: Callable[[Any], Awaitable[Sequence[Emit]]] | None = None
    readmodel: Any = None
    max_deliver: int | None = None
    requests: dict[str, RequestHandler] = field(default_factory=dict)


class RetryLater(Exception):
    """Raised by a handler when a dependency outside the bus is temporarily unavailable (a channel is
    disconnected, a rate limit applies): the message is redelivered after ``delay_s`` and this never counts
    towards dead-lettering."""

    def __init__(self, reason: str, delay_s: float = 5.0):
        super().__init__(reason)
        self.delay_s = delay_s
