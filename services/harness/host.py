"""Run one or more services in this process: connect, ensure streams, start runners and the status server,
wait for a stop signal, stop gracefully (finish in-flight messages, ack, drain the connection)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlparse

from nats.aio.client import Client

from events.store.jetstream import JetStreamEventStore
from events.store.streams import StreamSettings, ensure_streams
from services.harness.config import Credentials, Settings
from services.harness.connect import connect_nats
from services.harness.context import ServiceContext
from services.harness.logging import get_logger
from services.harness.metrics import Metrics
from services.harness.natsauth import RunIdentityIssuer
from services.harness.runner import ServiceRunner
from services.harness.service import Service
from services.harness.status import start_status_server, status_app

Builder = Callable[[ServiceContext], Service]


@dataclass
class Host:
    settings: Settings
    credentials: Credentials
    builders: dict[str, Builder]
    urls: list[str]
    metrics: Metrics = field(default_factory=Metrics)
    run_identities: RunIdentityIssuer | None = None

    def __post_init__(self) -> None:
        self.log = get_logger("nanoclaw.host")
        self.runners: list[ServiceRunner] = []
        self.nc: Client | None = None
        self._status = None

    async def start(self) -> None:
        s = self.settings
        self.nc = await connect_nats(self.urls, s.nats, self.credentials, name=f"nanoclaw-{'+'.join(self.builders)}")
        await ensure_streams(self.nc.jetstream(), StreamSettings(s.nats.stream_replicas, s.nats.duplicate_window_s))
        store = JetStreamEventStore(self.nc, timeout=s.nats.request_timeout_s)
        ctx = ServiceContext(s, self.credentials, self.nc, store, self.metrics, self.run_identities)
        services = [build(ctx) for build in self.builders.values()]
        self.runners = [ServiceRunner(svc, self.nc, store, s.harness, self.metrics) for svc in services]
        # Every consumer exists before any service publishes, so nothing emitted at start-up is missed.
        for r in self.runners:
            await r.ensure_consumer()
        for r in self.runners:
            await r.start()
        if s.harness.status_port is not None:
            app = status_app(self.metrics, self.checks)
            self._status = await start_status_server(app, s.harness.status_host, s.harness.status_port)
        self.log.info("services running", services=list(self.builders), nats=[_redact(u) for u in self.urls])

    def checks(self) -> dict[str, dict[str, bool]]:
        return {r.service.name: {"healthy": r.healthy, "ready": r.ready} for r in self.runners}

    async def stop(self) -> None:
        for r in reversed(self.runners):
            await r.stop()
        if self._status is not None:
            await self._status.cleanup()
        if self.nc is not None and not self.nc.is_closed:
            # Runners have finished and acked their in-flight work; drain() would wait on idle pull
            # subscriptions for its full timeout, so a plain close (which flushes) is enough here.
            await self.nc.close()
        self.log.info("services stopped")

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def _redact(url: str) -> str:
    """A URL without its password (the embedded server's services URL carries one)."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return parsed._replace(netloc=f"{parsed.username}:***@{parsed.hostname}:{parsed.port}").geturl()
