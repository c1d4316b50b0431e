"""One whole system per fuzz module, as `nanoclaw up` runs it (every service, the embedded NATS with one
least-privilege identity per service and per-run sandbox users, the runner on its process backend), on an event
loop of its own in a background thread: hypothesis drives plain functions, each example a few calls into it.

Barrier (no sleeps): a valid event that a service's consumer receives but does not handle (an event type of an
aggregate it follows, a type outside its handler map). Its consumer's ack floor reaching that event's sequence
says every message before it on the consumer's subjects was settled (handled or dead-lettered) and the consumer
still runs; the event itself is then known not to be dead-lettered. Every service's private read model and the
projections service's read models must have applied it too (what a handler waits for before it runs).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Awaitable, TypeVar

import nats
from nats.aio.client import Client
from pydantic import SecretStr

from events.catalogue import payload_class
from events.catalogue.agent import AgentInputDelivered
from events.catalogue.base import EventPayload
from events.catalogue.queue import RunQueueOpened
from events.catalogue.router import ConversationStarted, GroupUpdated
from events.envelope import AggregateRef, Commit, new_commit
from events.store.jetstream import JetStreamEventStore
from events.store.memory import subject_matches
from events.subjects import EVENT_STREAM
from projections.dead_letters import dead_lettered
from services.cli.registry import builders
from services.harness.config import Credentials
from services.harness.host import embedded_host
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsperms import SERVICE_ACCESS
from services.harness.natsserver import EmbeddedNats, free_port
from services.harness.runner import consumer_name
from services.projector.service import read_model_path
from tests.agent_path import REAL_KEY
from tests.bus import settings
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually, projected

T = TypeVar("T")
CONSUMERS = ("gateway", "router", "queue", "runner", "scheduler", "governance")
"""The services with a durable consumer on the event log (the broker serves requests only; the projections
service follows the log with a position of its own and records what its read models skip)."""

STEP_TIMEOUT_S = 60.0
"""A bound on one call into the system, never a speed claim."""


def barrier_payloads(n: int) -> list[EventPayload]:
    """One valid event per barrier aggregate: together every consumer in :data:`CONSUMERS` receives one it does
    not handle (``AgentInputDelivered``: gateway, router, queue, scheduler; ``ConversationStarted``: queue;
    ``RunQueueOpened`` on an aggregate of its own: runner; ``GroupUpdated``: governance)."""
    return [AgentInputDelivered(run_id=f"barrier-{n}", chat_jid="fuzz:barrier", group_folder="barrier", message_ids=[]),
            ConversationStarted(chat_jid=f"fuzz:barrier-{n}"),
            RunQueueOpened(),
            GroupUpdated(jid=f"fuzz:barrier-{n}")]


def owner(subject: str) -> str:
    """The service whose own credentials may publish on ``subject`` (natsperms.SERVICE_ACCESS; every service also
    writes its own dead letters on ``nc.evt.system.deadletter.<service>.…``)."""
    parts = subject.split(".")
    if parts[2:4] == ["system", "deadletter"] and parts[4] in SERVICE_ACCESS:
        return parts[4]
    for name, access in SERVICE_ACCESS.items():
        if any(subject_matches(p, subject) for p in access.emits):
            return name
    raise LookupError(f"no service may publish on {subject}")


class SharedSystem:
    def __init__(self, tmp_path: Path, **sections: Any):
        self.tmp_path = tmp_path
        self.sections = sections
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-system", daemon=True)
        self._stub = StubAnthropic()
        self.as_service: dict[str, Client] = {}
        self.barriers = 0

    def run(self, coro: Awaitable[T], timeout: float = STEP_TIMEOUT_S) -> T:
        """Run ``coro`` on the system's loop and return its result (raises what it raises)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> "SharedSystem":
        self._thread.start()
        self._stub.__enter__()
        self.run(self._start(), timeout=120)
        return self

    async def _start(self) -> None:
        # As tests/agent_path.py's ``system`` does, with the host kept here so that it can be restarted.
        self.server = EmbeddedNats(self.tmp_path / "nats", sync_always=False,
                                   auth=EmbeddedAuth(self.tmp_path / "auth.conf")).start()
        proxy_port = free_port()
        self.settings = settings(
            self.tmp_path, channels={"http": {"port": 0}}, services=list(builders()),
            runner={"backend": "process", "model_proxy_url": f"http://127.0.0.1:{proxy_port}"},
            broker={"model_proxy": {"port": proxy_port, "upstream_url": self._stub.url}}, **self.sections)
        self.credentials = Credentials(anthropic_api_key=SecretStr(REAL_KEY), run_token_key=SecretStr("k" * 32))
        await self._start_host()
        for name in SERVICE_ACCESS:
            user, password, inbox = self.server.auth.credentials(name)
            self.as_service[name] = await nats.connect(self.server.url, user=user, password=password,
                                                       inbox_prefix=inbox, max_reconnect_attempts=2)

    def stop(self) -> None:
        try:
            self.run(self._stop(), timeout=120)
        finally:
            self._stub.__exit__(None, None, None)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    async def _start_host(self) -> None:
        self.host = embedded_host(self.settings, self.credentials, builders(), self.server)
        await self.host.start()
        self.store = JetStreamEventStore(self.host.nc)

    def restart(self) -> None:
        """Stop every service and start them again, as a restart of `nanoclaw up` on the same data and server."""
        async def restart() -> None:
            await self.host.stop()
            await self._start_host()
        self.run(restart(), timeout=120)

    async def _stop(self) -> None:
        for nc in self.as_service.values():
            await nc.close()
        try:
            await self.host.stop()
        finally:
            self.server.stop()

    def runner(self, name: str):
        return next(r for r in self.host.runners if r.service.name == name)

    def handled(self, name: str) -> list[str]:
        return sorted(self.runner(name).service.handlers)

    async def publish(self, subject: str, body: bytes, headers: dict[str, str] | None = None) -> int:
        """Publish into the log with the credentials of the service that owns ``subject``; returns its seq."""
        ack = await self.as_service[owner(subject)].jetstream().publish(subject, body, headers=headers,
                                                                        stream=EVENT_STREAM)
        return ack.seq

    async def append(self, payload: EventPayload, aggregate_id: str) -> int:
        """Append a valid one-event commit with its owner's credentials; returns its seq."""
        commit: Commit = new_commit(AggregateRef.for_payload(payload, aggregate_id), [payload], version=0,
                                    source="fuzz")
        subject, headers, body = commit.encode()
        return await self.publish(subject, body, headers)

    async def barrier(self) -> dict[str, int]:
        """Publish :func:`barrier_payloads` and wait until every consumer has settled everything up to the one it
        receives. Returns consumer → the barrier's seq. Raises AssertionError (naming the laggards) when one
        does not get there or a service is unhealthy."""
        self.barriers += 1
        seqs = [await self.append(p, aggregate_id=f"barrier-{self.barriers}") for p in barrier_payloads(self.barriers)]
        mine = {name: max(s for s, p in zip(seqs, barrier_payloads(0)) if self.receives(name, p)) for name in CONSUMERS}
        js = self.host.nc.jetstream()

        async def floors() -> dict[str, int]:
            return {n: (await js.consumer_info(EVENT_STREAM, consumer_name(n))).ack_floor.stream_seq for n in CONSUMERS}

        async def settled() -> bool:
            return all(f >= mine[n] for n, f in (await floors()).items())

        await eventually(settled, timeout=30, detail=f"barrier {mine}")
        # What a handler waits for before it runs, and what the operator reads: every read model got past it.
        last = max(seqs)
        for r in self.host.runners:
            if r.service.readmodel is not None:
                await r.service.readmodel.wait_for(last, timeout=30)
        path = read_model_path(self.host.settings.data_dir)
        await eventually(lambda: projected(path, last), timeout=30, detail="the projections service's read models")
        unhealthy = [r.service.name for r in self.host.runners if not r.healthy]
        assert not unhealthy, f"unhealthy services: {unhealthy}"
        return mine

    def receives(self, name: str, payload: EventPayload | type[EventPayload]) -> bool:
        """Whether service ``name``'s consumer follows ``payload``'s aggregate."""
        return any((payload_class(t).context, payload_class(t).aggregate) == (payload.context, payload.aggregate)
                   for t in self.handled(name))

    async def dead_lettered_by(self) -> dict[int, set[str]]:
        return await dead_lettered(self.store)
