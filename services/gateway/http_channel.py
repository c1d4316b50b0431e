"""The HTTP webhook channel.

- ``POST /v1/messages`` with ``{chat, sender, text, reply_to?, callback_url?}`` (``Content-Type:
  application/json``) → ``202 {"id": …, "chat": …}`` once the message is safely in the inbound buffer. Replies go
  to ``callback_url`` (POST, JSON) and can be read with
- ``GET /v1/chats/{chat}/messages?after=ID&wait=S`` (long-poll up to ``wait`` s, capped by config).
- Every error is JSON ``{"error": …, "field": …}`` (services/gateway/http_errors.py) and stores nothing:
  ``400`` a body that is not UTF-8 / not a JSON object / a bad query parameter, ``401`` a missing or wrong bearer
  token, ``404`` a chat that is not a registered group (there is no auto-registration: register it first with
  ``nanoclaw groups add http:<chat> …``), ``413`` a body over the limit (or ``text`` over ``max_text_bytes``),
  ``415`` a content type other than JSON, ``422`` a schema error naming the field. ``503``: the inbound buffer is
  full, or whether the chat is registered cannot be checked (the bus is unreachable); retry later.
- Loopback by default; when bound elsewhere a bearer token (``webhook_token`` in credentials.yml) is required.

Chat JIDs of this channel are ``http:<chat>``; ``<chat>`` follows :func:`events.catalogue.chat.http_chat_problem`
(letters and digits of any script, and ``_ @ . : + -``), the same rule the router applies when registering.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from events.catalogue.chat import HTTP_CHAT_MAX, MessageReceived, http_chat_problem
from events.catalogue.types import iso_utc
from events.envelope import utcnow
from services.gateway.buffer import BufferFull, InboundBuffer
from services.gateway.config import HttpConfig
from services.gateway.http_body import check_content_type, parse_object
from services.gateway.http_errors import RequestRefused, error as _error, json_errors
from services.gateway.registrations import RegistrationUnknown

Registered = Callable[[str], Awaitable[bool]]
"""``registered(jid)``: whether the chat is a registered group (raises RegistrationUnknown when it cannot tell)."""

log = logging.getLogger("nanoclaw.gateway.http")
PREFIX = "http:"


class WebhookError(Exception):
    """The webhook channel cannot start as configured."""


class InboundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chat: str = Field(min_length=1, max_length=HTTP_CHAT_MAX)
    sender: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1)
    reply_to: str | None = Field(None, max_length=200)
    callback_url: str | None = None

    @field_validator("chat")
    @classmethod
    def _chat(cls, v: str) -> str:
        problem = http_chat_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("callback_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


class HttpChannel:
    """The channel's state (replies, callbacks) lives in ``<data_dir>/gateway/http.db``, private to the gateway."""

    name = "http"
    connected = True  # a local HTTP server: replies can always be stored for GET and callbacks

    def __init__(self, config: HttpConfig, buffer: InboundBuffer, state_path: Path, token: str | None,
                 registered: Registered):
        problem = exposure_problem(config, token)
        if problem:
            raise WebhookError(problem)
        self.config, self.buffer, self.token, self.registered = config, buffer, token, registered
        self.max_body_bytes = config.max_text_bytes + 4096  # the text plus room for the other fields
        state_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(state_path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS replies (id INTEGER PRIMARY KEY AUTOINCREMENT, chat TEXT NOT NULL,"
                        " request_id TEXT UNIQUE NOT NULL, text TEXT NOT NULL, sent_at TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS callbacks (chat TEXT PRIMARY KEY, url TEXT NOT NULL)")
        self._new_reply = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---- HTTP server -------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors, self._auth], client_max_size=self.max_body_bytes)
        app.add_routes([web.post("/v1/messages", self._post), web.get("/v1/chats/{chat}/messages", self._get)])
        return app

    async def serve(self) -> None:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("webhook channel listening on http://%s:%s", self.config.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self.db.close()

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if self.token and not bearer_matches(request.headers.get("Authorization"), self.token):
            raise RequestRefused(401, "missing or wrong bearer token", "Authorization")
        return await handler(request)

    async def _post(self, request: web.Request) -> web.Response:
        check_content_type(request.content_type)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RequestRefused(413, f"body larger than {self.max_body_bytes} bytes", None) from None
        except web.RequestPayloadError as exc:  # e.g. a Content-Encoding body that does not decode
            raise RequestRefused(400, f"body could not be read: {' '.join(str(exc).split())}", None) from None
        body = parse_object(raw)
        try:
            req = InboundRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
            return _error(422, f"{field}: {msg}", field)
        if len(req.text.encode()) > self.config.max_text_bytes:
            return _error(413, f"text: longer than {self.config.max_text_bytes} bytes", "text")
        chat_jid = PREFIX + req.chat
        await self._require_registered(chat_jid)
        message_id = uuid.uuid4().hex
        payload = MessageReceived(channel="http", chat_jid=chat_jid, message_id=message_id, sender=f"{PREFIX}{req.sender}",
                                  sender_name=req.sender, text=req.text, timestamp=iso_utc(utcnow()),
                                  reply_to_message_id=req.reply_to)
        try:
            self.buffer.put(f"{chat_jid}/{message_id}", payload, f"http:{message_id}", new_aggregate=True)
        except BufferFull as exc:
            return _error(503, str(exc), None)
        if req.callback_url:  # only once the message is accepted: a refused request leaves nothing behind
            self.db.execute("INSERT OR REPLACE INTO callbacks VALUES (?, ?)", (req.chat, req.callback_url))
        return web.json_response({"id": message_id, "chat": req.chat}, status=202)

    async def _require_registered(self, chat_jid: str) -> None:
        """Raises: RequestRefused 404 (not a registered group) or 503 (cannot tell now)."""
        try:
            if await self.registered(chat_jid):
                return
        except RegistrationUnknown as exc:
            raise RequestRefused(503, f"cannot check whether {chat_jid} is registered now ({exc}); retry later", None) from None
        raise RequestRefused(404, f"chat {chat_jid.removeprefix(PREFIX)!r} is not registered (register it with "
                                  f"`nanoclaw groups add {chat_jid} --name … --folder …`)", "chat")

    async def _get(self, request: web.Request) -> web.Response:
        chat = request.match_info["chat"]
        after = _query_number(request, "after", "0", int, "an integer reply id", 0, 2**63 - 1)
        wait = _query_number(request, "wait", "0", float, "a number of seconds", 0.0, float("inf"))
        problem = http_chat_problem(chat)
        if problem:
            raise RequestRefused(422, f"chat: {problem}", "chat")
        await self._require_registered(PREFIX + chat)
        wait = min(wait, self.config.max_wait_s)
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            rows = self.db.execute("SELECT id, text, sent_at, request_id FROM replies WHERE chat = ? AND id > ? ORDER BY id",
                                   (chat, after)).fetchall()
            remaining = deadline - asyncio.get_running_loop().time()
            if rows or remaining <= 0:
                return web.json_response({"messages": [{"id": r[0], "text": r[1], "sent_at": r[2], "request_id": r[3]} for r in rows]})
            try:
                async with asyncio.timeout(remaining):  # not wait_for: it can swallow a cancel (3.11)
                    await self._new_reply.wait()
            except TimeoutError:
                pass

    # ---- ChannelPort -------------------------------------------------------------------------------------
    async def send(self, chat_jid: str, text: str, request_id: str) -> tuple[str, str]:
        chat = chat_jid.removeprefix(PREFIX)
        sent_at = iso_utc(utcnow())
        self.db.execute("INSERT OR IGNORE INTO replies(chat, request_id, text, sent_at) VALUES (?,?,?,?)", (chat, request_id, text, sent_at))
        reply_id = self.db.execute("SELECT id FROM replies WHERE request_id = ?", (request_id,)).fetchone()[0]
        self._new_reply.set()
        self._new_reply = asyncio.Event()
        row = self.db.execute("SELECT url FROM callbacks WHERE chat = ?", (chat,)).fetchone()
        if row:
            await self._callback(row[0], {"id": reply_id, "chat": chat, "text": text, "sent_at": sent_at})
        return str(reply_id), sent_at

    async def _callback(self, url: str, body: dict[str, Any]) -> None:
        """POST the reply; failures are logged (the reply stays readable with GET) and retried twice."""
        self._session = self._session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for attempt in range(3):
            try:
                async with self._session.post(url, json=body) as resp:
                    if resp.status < 400:
                        return
                    log.warning("callback %s answered %s (attempt %d)", url, resp.status, attempt + 1)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("callback %s failed (attempt %d): %s", url, attempt + 1, exc)
            await asyncio.sleep(0.5 * (attempt + 1))

    async def set_typing(self, chat_jid: str, composing: bool) -> None:
        return None  # HTTP has no typing indicator


def exposure_problem(config: HttpConfig, token: str | None) -> str | None:
    """Why the webhook may not listen as configured (bound beyond loopback without a token), or None."""
    if not _is_loopback(config.host) and not token:
        return f"channels.http.host: {config.host} is not loopback; set webhook_token in credentials.yml"
    return None


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is exactly ``Bearer <token>``. Compared in constant time
    (``hmac.compare_digest`` on UTF-8 bytes), so the time to answer does not reveal how much of a guess was
    right; a missing header never matches."""
    if authorization is None:
        return False
    return hmac.compare_digest(authorization.encode("utf-8", "surrogateescape"), f"Bearer {token}".encode())


def _query_number(request: web.Request, name: str, default: str, kind: type, what: str, low, high):
    """A query parameter as ``kind`` within ``[low, high]``. Raises: RequestRefused 400 naming the parameter."""
    text = request.query.get(name, default)
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        value = None
    if value is None or not low <= value <= high:  # also refuses NaN
        raise RequestRefused(400, f"{name} must be {what} from {low} (got {text[:40]!r})", name)
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
