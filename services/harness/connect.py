"""Connecting to NATS with the settings and credentials every service shares."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats
from nats.aio.client import Client

from services.harness.config import Credentials, NatsSettings

log = logging.getLogger("nanoclaw.nats")


class NatsUnavailable(Exception):
    """No NATS server answered at the configured URLs."""


async def connect_nats(urls: list[str], settings: NatsSettings, credentials: Credentials | None = None, *,
                       name: str = "nanoclaw", reconnect: bool = True) -> Client:
    """Connect with automatic reconnection (forever, 1 s apart) and logged state changes.

    Raises:
        NatsUnavailable: nothing answered within ``settings.connect_timeout_s`` (names the URLs).
    """
    opts: dict[str, Any] = {
        "servers": urls,
        "name": name,
        "connect_timeout": settings.connect_timeout_s,
        "allow_reconnect": reconnect,
        "max_reconnect_attempts": -1 if reconnect else 1,  # 0 would mean "forever" in nats-py
        "reconnect_time_wait": 1,
    }
    nc = Client()

    async def on_disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):  # closing on purpose also fires this callback
            log.warning("disconnected from NATS; reconnecting")

    opts.update(error_cb=_on_error, disconnected_cb=on_disconnected, reconnected_cb=_on_reconnected)
    creds = credentials.nats if credentials else None
    if creds:
        if creds.user:
            opts["user"] = creds.user
            opts["password"] = creds.password.get_secret_value() if creds.password else None
        if creds.nkey_seed:
            opts["nkeys_seed_str"] = creds.nkey_seed.get_secret_value()
        if creds.creds_file:
            opts["user_credentials"] = str(creds.creds_file)
        if creds.inbox_prefix:
            opts["inbox_prefix"] = creds.inbox_prefix
    try:
        await nc.connect(**opts)
        return nc
    except (nats.errors.NoServersError, OSError, TimeoutError, nats.errors.Error) as exc:
        raise NatsUnavailable(f"cannot reach NATS at {', '.join(urls)}: {exc or type(exc).__name__}") from exc


async def _on_error(exc: Exception) -> None:
    log.warning("nats error: %s", exc)


async def _on_reconnected() -> None:
    log.info("reconnected to NATS")


async def subscriptions_registered(nc: Client) -> None:
    """Return once the server has every subscription this connection made so far.

    ``Client.flush()`` alone does not promise that in nats-py 2.16: a SUB waits in the client's pending buffer
    for its flusher task, but flush's PING is written to the socket at once (``_send_subscribe`` vs
    ``_send_ping`` in nats/aio/client.py), so the PONG can come back before the server has seen the SUB and a
    request from another connection then gets "no responders". Letting the flusher empty the buffer first puts
    the PING behind the SUBs.

    Raises:
        nats.errors.FlushTimeoutError: no PONG within nats-py's default flush timeout (s).
    """
    for _ in range(1000):  # bounded: under a publish storm the buffer may refill; the flush still follows
        if not nc.pending_data_size or not nc.is_connected:
            break
        await asyncio.sleep(0)
    await nc.flush()
