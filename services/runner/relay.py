"""A TCP forwarder from the sandbox network's gateway to a loopback service.

Why: the embedded NATS server and the model proxy listen on loopback only; a sandbox on the internal network
reaches the host at the network's gateway IP and nowhere else. The runner relays exactly those two ports
there (``TcpRelay(gateway_ip, 4222, "127.0.0.1", 4222)``), so nothing else on the host is exposed to sandboxes.

Each accepted connection opens one connection to the target and copies bytes both ways; an EOF is passed on as
a half-close, and either side failing closes both. A target that refuses the connection closes the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from events.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class TcpRelay:
    """Args: ``listen_host``/``listen_port`` (0: any free port, see :attr:`port`), ``target_host``/``target_port``.

    Use ``await relay.start()`` / ``await relay.close()`` or ``async with TcpRelay(...) as relay``.
    ``start`` raises OSError when the address cannot be bound (e.g. the gateway IP does not exist yet).
    """

    def __init__(self, listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
        self.listen_host, self.listen_port = listen_host, listen_port
        self.target_host, self.target_port = target_host, target_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        """The bound port (useful with ``listen_port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("relay not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> "TcpRelay":
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.listen_port)
        logger.info("relay %s:%d -> %s:%d", self.listen_host, self.port, self.target_host, self.target_port)
        return self

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
            await cancel_and_wait(list(self._tasks))
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> "TcpRelay":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        """Relay one connection. Never ends *cancelled*: ``asyncio.start_server`` runs this as a task whose
        done-callback calls ``task.exception()`` (CPython 3.11 ``asyncio/streams.py``,
        ``StreamReaderProtocol.connection_made``), which raises ``CancelledError`` on a cancelled task, and the
        loop then logs ``Exception in callback … relay.py … CancelledError`` (issue 16, seen when ``up`` stopped
        with a live container). A cancel (``close()``, or the loop cancelling every task at shutdown) closes
        both sides and ends the task normally; nothing awaits it but that callback."""
        try:
            await self._relay(client_r, client_w)
        except asyncio.CancelledError:
            pass

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        target_w: asyncio.StreamWriter | None = None
        try:
            try:
                target_r, target_w = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError as exc:
                logger.warning("relay to %s:%d failed: %s", self.target_host, self.target_port, exc)
                return
            try:
                async with asyncio.TaskGroup() as both:  # one direction failing cancels the other
                    both.create_task(_pipe(client_r, target_w))
                    both.create_task(_pipe(target_r, client_w))
            except* OSError:
                pass  # a side reset the connection: close both below
        finally:
            for writer in (client_w, target_w):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await writer.wait_closed()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()
