"""Stopping the TCP relay while a sandbox connection is live logs nothing (issue 16: shutdown with a live
container once logged ``Exception in callback … relay.py … CancelledError``).

Why it happened: ``asyncio.start_server`` runs each connection's handler as a task with a done-callback that
calls ``task.exception()`` (CPython 3.11 ``asyncio/streams.py``, ``StreamReaderProtocol.connection_made``); on a
*cancelled* task that call raises ``CancelledError`` inside the callback, which the loop reports.
"""

from __future__ import annotations

import asyncio

from services.runner.relay import TcpRelay


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _callbacks_run() -> None:
    """A barrier: callbacks scheduled before this call (a task's done-callbacks) have run when it returns."""
    loop = asyncio.get_running_loop()
    barrier = loop.create_future()
    loop.call_soon(barrier.set_result, None)
    await barrier


async def _live_connection(relay: TcpRelay) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(b"ping")
    await writer.drain()
    assert await reader.readexactly(4) == b"ping"  # relayed both ways: the handler task is live
    return reader, writer


async def test_closing_the_relay_with_a_live_connection_reports_no_exception_in_a_callback() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    target = await asyncio.start_server(_echo, "127.0.0.1", 0)
    relay = await TcpRelay("127.0.0.1", 0, "127.0.0.1", target.sockets[0].getsockname()[1]).start()
    reader, writer = await _live_connection(relay)
    try:
        await relay.close()
        await _callbacks_run()
        assert await reader.read() == b""  # the client's connection was closed by the relay
    finally:
        writer.close()
        target.close()
        await target.wait_closed()
        loop.set_exception_handler(None)
    assert reported == []


async def test_a_connection_task_cancelled_by_the_loop_at_shutdown_reports_no_exception_in_a_callback() -> None:
    """``asyncio.run`` cancels every task still running when the main coroutine ends (``up`` stopping)."""
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    target = await asyncio.start_server(_echo, "127.0.0.1", 0)
    relay = await TcpRelay("127.0.0.1", 0, "127.0.0.1", target.sockets[0].getsockname()[1]).start()
    _reader, writer = await _live_connection(relay)
    try:
        handlers = list(relay._tasks)
        assert len(handlers) == 1
        handlers[0].cancel()
        await asyncio.wait(handlers)
        await _callbacks_run()
    finally:
        writer.close()
        await relay.close()
        target.close()
        await target.wait_closed()
        loop.set_exception_handler(None)
    assert reported == []
