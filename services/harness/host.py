"""Run one or more services in this process: connect, ensure streams, start runners and the status server,
wait for a stop signal, stop gracefully (finish in-flight messages, ack, drain the connection)."""

from __future__ import annotations

import asyncio
import functools
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
from services.harness.natsperms import ADMIN
from services.harness.natsserver import EmbeddedNats
from services.harness.runner import ServiceRunner
from services.harness.service import Service
from services.harness.status import start_status_server, status_app

Builder = Callable[[ServiceContext], Service]


@dataclass
class Host:
    """Args:
        settings, credentials: the loaded configuration; ``credentials`` also authenticate the host's own
            connection (stream set-up, the status checks).
        builders: service name → builder.
        urls: the NATS servers.
        run_identities: per-run sandbox users (the embedded server's, or the auth callout's issuer).
        service_credentials: each service's own NATS identity (``nanoclaw up``: one least-privilege user per
            service, services/harness/natsperms.py), so a service tricked into acting (a confused deputy) has only
            its own rights; each service then gets its own connection. None: every service shares the host's.
    """

    settings: Settings
    credentials: Credentials
    builders: dict[str, Builder]
    urls: list[str]
    metrics: Metrics = field(default_factory=Metrics)
    run_identities: RunIdentityIssuer | None = None
    service_credentials: Callable[[str], Credentials] | None = None

    def __post_init__(self) -> None:
        self.log = get_logger("nanoclaw.host")
        self.runners: list[ServiceRunner] = []
        self.nc: Client | None = None
        self._connections: list[Client] = []
        self._status = None

    async def start(self) -> None:
        s = self.settings
        self.nc = await connect_nats(self.urls, s.nats, self.credentials, name=f"nanoclaw-{'+'.join(self.builders)}")
        await ensure_streams(self.nc.jetstream(), StreamSettings(s.nats.stream_replicas, s.nats.duplicate_window_s))
        for name, build in self.builders.items():
            nc = self.nc
            if self.service_credentials is not None:
                nc = await connect_nats(self.urls, s.nats, self.service_credentials(name), name=f"nanoclaw-{name}")
                self._connections.append(nc)
            store = JetStreamEventStore(nc, timeout=s.nats.request_timeout_s)
            ctx = ServiceContext(s, self.credentials, nc, store, self.metrics, self.run_identities)
            self.runners.append(ServiceRunner(build(ctx), nc, store, s.harness, self.metrics))
        # Every consumer exists before any service publishes, so nothing emitted at start-up is missed.
        for r in self.runners:
            await r.ensure_consumer()
        for r in self.runners:
            await r.start()
        if s.harness.status_port is not None:
            app = status_app(self.metrics, self.checks)
            self._status = await start_status_server(app, s.harness.status_host, s.harness.status_port)
        self.log.info("services running", services=list(self.builders), nats=[_redact(u) for u in self.urls],
                      identities="per service" if self.service_credentials else "shared")

    def checks(self) -> dict[str, dict[str, bool]]:
        # Not ready while a service's connection is down (e.g. the embedded server restarting); nats-py
        # reconnects by itself and readiness returns with the connection.
        return {r.service.name: {"healthy": r.healthy, "ready": r.ready and r.nc.is_connected} for r in self.runners}

    async def stop(self) -> None:
        for r in reversed(self.runners):
            await r.stop()
        if self._status is not None:
            await self._status.cleanup()
        # Runners have finished and acked their in-flight work; drain() would wait on idle pull subscriptions
        # for its full timeout, so a plain close (which flushes) is enough here.
        if self.run_identities is not None:
            await self.run_identities.close()
        for nc in [*self._connections, self.nc]:
            if nc is not None and not nc.is_closed:
                await nc.close()
        self._connections.clear()
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


def embedded_host(settings: Settings, credentials: Credentials, builders: dict[str, Builder], server: EmbeddedNats,
                  **options) -> Host:
    """The host `nanoclaw up` runs on its embedded server (which must have ``auth``): the admin's identity for the
    host's own connection, each service its own least-privilege identity, sandboxes issued per run by the
    server's accounts (services/harness/natsauth.py). ``options``: more :class:`Host` fields (``metrics``)."""
    auth = server.auth
    if auth is None:
        raise ValueError("embedded_host needs an EmbeddedNats with auth (per-service and per-run identities)")
    return Host(settings, auth.identity(ADMIN, credentials), builders, [server.url], run_identities=auth,
                service_credentials=functools.partial(auth.identity, base=credentials), **options)
