"""`nanoclaw up` keeps its embedded nats-server running: when the server dies, it is started again with the same
port, store and identities (:meth:`~services.harness.natsserver.EmbeddedNats.restart`).

The clients need nothing from us: every connection reconnects by itself (services/harness/connect.py), nats-py
subscribes again (request subscriptions, the auth-callout responder, pull inboxes), the durable consumers are in
the store and resume from their acked positions, and the read models' ordered replays recreate their consumers
when heartbeats stop (events/store/jetstream.py). While the bus is unreachable `/readyz` answers 503
(services/harness/host.py).

A server that keeps dying is restarted with growing delays (:data:`RESTART_DELAYS_S`), and every exit and restart
is logged; a server that ran :data:`STABLE_S` seconds counts as healthy again, so its next crash is restarted at once.
"""

from __future__ import annotations

import asyncio

from services.harness.logging import get_logger
from services.harness.natsserver import EmbeddedNats, NatsServerError

RESTART_DELAYS_S = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""The wait before the n-th restart in a row (the last one repeats)."""
STABLE_S = 30.0
"""A server that ran this long before dying is restarted without delay."""


async def supervise(server: EmbeddedNats) -> None:
    """Run until cancelled, restarting ``server`` whenever it dies (never gives up; `up` stays up and not ready).

    Runs on the event loop's thread, which is the thread the server must die with.
    """
    log = get_logger("nanoclaw.natsserver", url=server.url, log_file=str(server.log_path))
    loop = asyncio.get_running_loop()
    in_a_row = 0  # restarts since the server last ran STABLE_S
    since = loop.time()
    while True:
        if server.running:
            pid = server.proc.pid
            status = await server.wait_exit()
            ran_s = loop.time() - since
            if ran_s >= STABLE_S:
                in_a_row = 0
            log.error("nats-server exited; restarting it", pid=pid, exit_status=status, ran_s=round(ran_s, 1))
        delay = RESTART_DELAYS_S[min(in_a_row, len(RESTART_DELAYS_S) - 1)]
        in_a_row += 1
        await asyncio.sleep(delay)
        began = loop.time()
        try:
            await server.restart()
        except NatsServerError as exc:
            log.error("nats-server did not start again; retrying", attempt=in_a_row, error=str(exc))
            continue
        since = loop.time()
        log.warning("nats-server restarted", pid=server.proc.pid, attempt=in_a_row, took_s=round(since - began, 3))
