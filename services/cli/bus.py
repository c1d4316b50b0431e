"""How CLI commands reach the bus: configured URLs, else the embedded server of a running `nanoclaw up`
(its URL is in ``<data_dir>/run/nats.url``), else a temporary embedded server on the data directory, for which
the command takes the data directory's lock (services/harness/datalock.py) as `up` does: never two servers on
one store."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlparse

from nats.aio.client import Client

from events.store.jetstream import JetStreamEventStore
from events.store.streams import StreamSettings, ensure_streams
from services.harness.config import Credentials, Settings
from services.harness.connect import NatsUnavailable, connect_nats
from services.harness.datalock import DataDirBusy, DataDirLock
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsserver import EmbeddedNats, stop_leftover


def run_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "run" / "nats.url"


def write_run_file(settings: Settings, url: str) -> None:
    """Record the running server's URL (with the admin's password: owner-only file)."""
    path = run_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url)


def nats_store_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "nats"


def running_embedded_url(settings: Settings) -> str | None:
    """The URL of a running `nanoclaw up`'s embedded server, if one answers."""
    path = run_file(settings)
    if not path.exists():
        return None
    url = path.read_text().strip()
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout=0.5):
            return url
    except OSError:
        return None


@contextlib.asynccontextmanager
async def bus(settings: Settings, credentials: Credentials, *, name: str,
              start_embedded: bool = True) -> AsyncIterator[tuple[Client, JetStreamEventStore]]:
    """Yield a connection and the event store.

    Raises:
        NatsUnavailable: nothing reachable (and ``start_embedded`` is false or the server failed to start), or
            `nanoclaw up` holds the data directory but its server does not answer yet.
    """
    with contextlib.ExitStack() as temporary:
        urls = settings.nats.urls or [running_embedded_url(settings) or
                                      _temporary_server(settings, name, start_embedded, temporary)]
        nc = await connect_nats(urls, settings.nats, credentials, name=name, reconnect=False)
        try:
            await ensure_streams(nc.jetstream(), StreamSettings(settings.nats.stream_replicas, settings.nats.duplicate_window_s))
            yield nc, JetStreamEventStore(nc, timeout=settings.nats.request_timeout_s)
        finally:
            await nc.close()


def _temporary_server(settings: Settings, name: str, start_embedded: bool, owned: contextlib.ExitStack) -> str:
    """Start an embedded server on the data directory for this command (stopped, and the data directory's lock
    released, when ``owned`` closes) and return its admin URL.

    Raises:
        NatsUnavailable: ``start_embedded`` is false; `nanoclaw up` holds the data directory but its server does not
            answer (starting, or restarting after a crash); another command runs a temporary server on it.
    """
    not_running = NatsUnavailable("the bus is not running: start it with `nanoclaw up` (or set nats.urls)")
    try:
        owned.enter_context(DataDirLock(settings.data_dir).acquire(f"`{name}` (a temporary NATS server)"))
    except DataDirBusy as exc:
        if exc.is_up:
            raise NatsUnavailable(f"the bus is starting (or its NATS server restarting): {exc}, but its NATS "
                                  f"server does not answer yet; try again in a moment") from None
        if start_embedded:
            raise NatsUnavailable(f"{exc}; try again when it has finished") from None
        raise not_running from None
    if not start_embedded:
        raise not_running
    # We own the data directory: a server still running on its store was left by a crashed `up`.
    stop_leftover(nats_store_dir(settings))
    # With the same accounts as `up`: the store is the services' account's (services/harness/natsauth.py).
    server = EmbeddedNats(nats_store_dir(settings), sync_always=settings.nats.sync_always,
                          auth=EmbeddedAuth(nats_store_dir(settings) / "auth.conf")).start()
    owned.callback(server.stop)
    return server.admin_url
