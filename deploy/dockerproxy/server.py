"""The Docker API proxy's server: one request per TCP connection, checked by :mod:`deploy.dockerproxy.policy`,
then forwarded to the engine's unix socket.

Per connection: read one request head and its body (by ``Content-Length``), decide, and either answer with
``{"message": "docker-proxy: <reason>"}`` (the docker CLI prints it as ``Error response from daemon: …``) or
forward the request with ``Connection: close`` and relay the engine's answer until it closes. Only the one
checked request is ever forwarded: a keep-alive connection is never piped raw after a check (clients handle
``Connection: close`` by reconnecting). The exception is the attach upgrade (``POST …/attach`` with
``Upgrade: tcp``): it keeps its upgrade headers, and after the engine's ``101`` bytes flow both ways, each
direction's EOF passed on as a half-close (the CLI closes its write side to send the container's stdin EOF).

The body forwarded is byte for byte the body that was checked. Calls on one container are checked against the
container itself (inspected through the engine; it must carry ``nanoclaw.role=agent``) and forwarded naming it
by the full id that was inspected. Every denial is logged at WARNING, every forwarded call at INFO.

Answers of the proxy itself: 403 denied by the policy; 400 malformed head, target or JSON body (or a bare CR/LF in
the head); 408 head or body not complete within 30 s; 411 a chunked request body; 413 a body over 1 MiB; 431 a
head over 64 KiB; 502 the engine cannot be reached or inspecting the target failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from deploy.dockerproxy.policy import (Decision, Malformed, ProxyPolicy, Request, check_request, check_target,
                                       parse_request, retarget)
from events.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_BODY = 1 << 20
ENGINE_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
# Not forwarded as sent: connection management is the proxy's own (RFC 9110 §7.6.1), Content-Length is
# recomputed from the body actually forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
               "content-length", "proxy-authorization", "proxy-authenticate"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A bare CR or LF inside a line: the engine's parser would end the line there, so it would see headers (a
# second Content-Length, Transfer-Encoding) that this parser does not.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FULL_ID = re.compile(r"[0-9a-f]{64}")


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.request = status, reason, ""


class DockerProxy:
    """Args:
        policy: what may pass.
        socket_path: the engine's unix socket.
    """

    def __init__(self, policy: ProxyPolicy, socket_path: str = "/var/run/docker.sock") -> None:
        self.policy, self.socket_path = policy, socket_path
        self._server: asyncio.Server | None = None
        # Strong references to the connection handlers. asyncio's streams hold their readers only weakly and the
        # loop holds tasks only weakly: an attach whose client has half-closed is reachable from nothing else,
        # and the garbage collector would end it mid-stream (its output silently lost).
        self._handlers: set[asyncio.Task] = set()

    async def start(self, host: str = "0.0.0.0", port: int = 2375) -> asyncio.Server:
        """Listen on ``host:port`` (port 0: any free port); returns the started server. Raises OSError."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD)
        return self._server

    async def close(self) -> None:
        """Stop listening and end the connections in flight."""
        if self._server is not None:
            self._server.close()
        await cancel_and_wait(list(self._handlers))

    async def engine_get(self, path: str) -> tuple[int, Any]:
        """``GET path`` on the engine: ``(status, parsed JSON body)``. HTTP/1.0, so the engine answers without
        chunking and closes. Raises OSError (no engine) or TimeoutError."""
        async with asyncio.timeout(ENGINE_TIMEOUT_S):
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
            try:
                writer.write(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
                await writer.drain()
                raw = await reader.read()
            finally:
                writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        with contextlib.suppress(ValueError):
            return status, json.loads(body)
        return status, None  # not JSON (/_ping answers "OK")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            await self._serve(reader, writer)
        except _Refused as exc:
            logger.warning("docker-proxy: denied %s from %s with %d: %s", exc.request or "a request", peer,
                           exc.status, exc.reason)
            await _answer(writer, exc.status, exc.reason)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except Exception:  # noqa: BLE001 — one broken connection must not stop the proxy
            logger.exception("docker-proxy: error serving %s", peer)
            with contextlib.suppress(Exception):
                await _answer(writer, 500, "internal error (see the proxy's log)")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # closed before a whole request head (a port probe)
        except asyncio.LimitOverrunError:
            raise _Refused(431, f"request head larger than {MAX_HEAD} bytes") from None
        except TimeoutError:
            raise _Refused(408, f"no complete request head within {REQUEST_TIMEOUT_S:.0f} s") from None
        method, target, headers = _parse_head(head)
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    body = await reader.readexactly(_content_length(headers))
            except TimeoutError:
                raise _Refused(408, f"request body not complete within {REQUEST_TIMEOUT_S:.0f} s") from None
            try:
                request = parse_request(method, target, body)
            except Malformed as exc:
                raise _Refused(400, str(exc)) from None
            decision = check_request(request, self.policy)
            if decision.allowed and decision.container is not None:
                decision, target = await self._check_container(request, decision, target)
            if not decision.allowed:
                raise _Refused(decision.status, decision.reason)
        except _Refused as exc:
            exc.request = f"{method} {target[:200]}"
            raise
        upgrade = decision.route == "container.attach" and "upgrade" in _connection_tokens(headers)
        logger.info("docker-proxy: %s %s%s", method, target, " (upgrade)" if upgrade else "")
        try:
            engine_reader, engine_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError as exc:
            raise _Refused(502, f"cannot reach the Docker engine at {self.socket_path}: {exc}") from None
        try:
            engine_writer.write(_forward_head(method, target, headers, body, upgrade) + body)
            await engine_writer.drain()
            if upgrade:
                await _both_ways(reader, writer, engine_reader, engine_writer)
            else:
                await _relay_answer(reader, writer, engine_reader)
        finally:
            engine_writer.close()

    async def _check_container(self, request: Request, decision: Decision, target: str) -> tuple[Decision, str]:
        """Inspect the target container: an agent → allowed, named by its full id; not found → allowed
        unchanged (the engine answers its own 404, which the runner reads as "already gone")."""
        try:
            status, info = await self.engine_get(f"/containers/{quote(decision.container or '', safe='')}/json")
        except (OSError, TimeoutError, ValueError, IndexError) as exc:
            raise _Refused(502, f"cannot inspect container {decision.container!r} through the engine: {exc}") from None
        if status == 404:
            return decision, target
        if status != 200 or not isinstance(info, dict) or not _FULL_ID.fullmatch(str(info.get("Id"))):
            raise _Refused(502, f"inspecting container {decision.container!r} failed with HTTP {status}")
        decision = check_target(decision, info)
        return decision, retarget(request, info["Id"]) if decision.allowed else target


def _parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    if any(_CONTROL.search(line) for line in lines):
        raise _Refused(400, "control character (bare CR or LF) in the request head")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _Refused(400, "malformed request line") from None
    if not _TOKEN.fullmatch(method) or version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _Refused(400, f"malformed request line {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        # A header without a colon, or an obsolete folded continuation line: parsers disagree on them (smuggling).
        if not colon or not _TOKEN.fullmatch(name):
            raise _Refused(400, f"malformed header line {line[:100]!r}")
        headers.append((name, value.strip()))
    return method, target, headers


def _content_length(headers: list[tuple[str, str]]) -> int:
    if any(name.lower() == "transfer-encoding" for name, _ in headers):
        raise _Refused(411, "chunked request bodies are not supported: send Content-Length")
    values = {value for name, value in headers if name.lower() == "content-length"}
    if not values:
        return 0
    if len(values) > 1 or not next(iter(values)).isdigit():
        raise _Refused(400, f"invalid Content-Length {sorted(values)}")
    length = int(values.pop())
    if length > MAX_BODY:
        raise _Refused(413, f"request body of {length} bytes is larger than {MAX_BODY}")
    return length


def _connection_tokens(headers: list[tuple[str, str]]) -> set[str]:
    return {token.strip().lower() for name, value in headers if name.lower() == "connection"
            for token in value.split(",")}


def _forward_head(method: str, target: str, headers: list[tuple[str, str]], body: bytes, upgrade: bool) -> bytes:
    """The head sent to the engine: the client's end-to-end headers, Content-Length of the body as read, and
    ``Connection: close`` (or the attach upgrade)."""
    dropped = _HOP_BY_HOP | _connection_tokens(headers)
    lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in headers if n.lower() not in dropped)]
    if body or any(n.lower() == "content-length" for n, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines += ["Connection: Upgrade", "Upgrade: tcp"] if upgrade else ["Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close ``sink`` (a client's stdin EOF reaches the container this way)."""
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()
    if sink.can_write_eof():
        sink.write_eof()


async def _both_ways(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                     engine_reader: asyncio.StreamReader, engine_writer: asyncio.StreamWriter) -> None:
    """The attach stream: both directions until both reached EOF, or until either fails (then both stop)."""
    await _until([_pipe(client_reader, engine_writer), _pipe(engine_reader, client_writer)], asyncio.FIRST_EXCEPTION)


async def _relay_answer(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                        engine_reader: asyncio.StreamReader) -> None:
    """Relay the engine's answer until the engine closes (it was asked to). Anything more the client sends is
    never forwarded; its EOF means it is gone (Docker clients never half-close a plain request), which ends a
    long answer such as ``…/wait`` early."""
    async def drain_client() -> None:
        while await client_reader.read(65536):
            pass

    await _until([_pipe(engine_reader, client_writer), drain_client()], asyncio.FIRST_COMPLETED)


async def _until(coros: list, when: str) -> None:
    """Run ``coros`` as tasks until ``when`` (``asyncio.FIRST_COMPLETED``/``FIRST_EXCEPTION``), then cancel the rest."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=when)
    finally:
        await cancel_and_wait(tasks)


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = json.dumps({"message": f"docker-proxy: {reason}"}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    writer.write(head.encode() + body)
    await writer.drain()


async def serve(policy: ProxyPolicy, host: str, port: int, socket_path: str,
                stop: asyncio.Event | None = None) -> None:
    """Check that the engine answers, listen, and serve until ``stop`` is set (forever without one).

    Raises:
        OSError: the engine's socket cannot be reached, or the port cannot be bound.
    """
    proxy = DockerProxy(policy, socket_path)
    try:
        status, _ = await proxy.engine_get("/_ping")
    except (OSError, TimeoutError, ValueError, IndexError) as exc:
        raise OSError(f"cannot reach the Docker engine at {socket_path}: {exc}") from None
    if status != 200:
        raise OSError(f"the Docker engine at {socket_path} answered /_ping with HTTP {status}")
    await proxy.start(host, port)
    logger.info("docker-proxy listening on %s:%d, engine %s (network %s, images %s, bind roots %s, runtimes %s)", host,
                port, socket_path, policy.network, list(policy.images), list(policy.bind_roots), list(policy.runtimes))
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await proxy.close()
