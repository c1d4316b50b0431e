"""Connection helpers against a real nats-server, also when the network splits the client's writes."""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest

from services.harness.connect import subscriptions_registered


@contextlib.asynccontextmanager
async def slow_relay(target_port: int, delay_s: float):
    """A loopback TCP relay that hands the client's protocol lines to the server one by one, ``delay_s`` apart:
    what a busy machine or network can do to two commands that usually arrive in one read."""
    async def pipe(reader, writer, delay):
        try:
            while data := await reader.read(65536):
                for line in data.splitlines(keepends=True) if delay else [data]:
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(line)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks: set[asyncio.Task] = set()

    async def accept(client_r, client_w):
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        tasks.add(asyncio.create_task(pipe(client_r, server_w, delay_s)))
        tasks.add(asyncio.create_task(pipe(server_r, client_w, 0)))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("queue", ["", "svc_probe"])
async def test_a_subscription_is_known_to_the_server_once_subscriptions_registered_returns(nats_server, queue):
    # nats-py writes flush()'s PING straight to the socket and the SUB only when its flusher task runs; split
    # into two reads, the server answered the PING before it saw the SUB and a request got "no responders".
    port = int(nats_server.url.rsplit(":", 1)[1])
    other = await nats.connect(nats_server.url)
    async with slow_relay(port, delay_s=0.05) as relay_port:
        nc = await nats.connect(f"nats://127.0.0.1:{relay_port}", max_reconnect_attempts=1)
        try:
            for attempt in range(3):
                async def answer(msg):
                    await msg.respond(b"here")
                await nc.subscribe(f"probe.{attempt}", queue=queue, cb=answer)
                await subscriptions_registered(nc)
                reply = await other.request(f"probe.{attempt}", b"", timeout=5)
                assert reply.data == b"here"
        finally:
            await nc.close()
            await other.close()
