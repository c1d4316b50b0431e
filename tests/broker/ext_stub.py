"""A local stand-in for an external API (GitHub or any HTTP service) on 127.0.0.1, port 0.

It records every request (method, path with query, headers, body, Host), answers with a JSON echo (or a
configured status and body), and can hold answers until :meth:`ExtStub.release` so tests see calls in flight.
It verifies ``X-Nanoclaw-Signature`` independently of the broker's code: the key derivation and string to sign
are re-implemented here with the standard library, from docs/external-access.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Seen:
    method: str
    path_qs: str
    host: str
    headers: dict[str, str]
    body: bytes


def expected_signature(master: bytes, seen: Seen) -> str:
    """What a provider computes to check ``X-Nanoclaw-Signature`` (the documented recipe)."""
    fields = dict(part.split("=", 1) for part in seen.headers["X-Nanoclaw-Signature"].split(","))
    folder, timestamp = fields["g"], fields["t"]
    key = hmac.new(master, f"nanoclaw/ext/sign/v1/{folder}".encode(), hashlib.sha256).digest()
    message = "\n".join(["v1", timestamp, folder, seen.method, seen.host, seen.path_qs,
                         hashlib.sha256(seen.body).hexdigest()]).encode()
    return f"t={timestamp},g={folder},v1={hmac.new(key, message, hashlib.sha256).hexdigest()}"


class ExtStub:
    def __init__(self, status: int = 200, answer: object | None = None, hold: bool = False):
        self.status, self.answer = status, answer
        self.requests: list[Seen] = []
        self.in_flight = 0
        self._gate = asyncio.Event()
        if not hold:
            self._gate.set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def release(self) -> None:
        self._gate.set()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Seen(request.method, request.raw_path, request.host, dict(request.headers), body))
        self.in_flight += 1
        try:
            await self._gate.wait()
        finally:
            self.in_flight -= 1
        answer = self.answer if self.answer is not None else {
            "method": request.method, "path": request.raw_path, "body": json.loads(body) if body else None}
        return web.json_response(answer, status=self.status)

    async def __aenter__(self) -> "ExtStub":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.release()
        assert self._runner is not None
        await self._runner.cleanup()
