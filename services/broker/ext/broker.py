"""The external-access broker: serves the agents' ``ext_call`` tool (NATS request ``nc.ipc.<folder>.ext_call``)
and makes the call on the group's behalf, so the sandbox never holds a provider token.

One call, in order:

1. **Identity** is the subject's folder token (the NATS server lets a run publish only under its own folder);
   the payload never names the group.
2. **Arguments** are checked and the provider builds the request and the level it needs
   (:mod:`~services.broker.ext.providers`); malformed arguments get an error naming the problem, no event.
3. Under an **in-flight lock per idempotency key** (a concurrent repeat waits, then gets the first result):
   a key already used returns its recorded result (``replayed: true``), or ``key_reused`` if the parameters
   differ, or "retry later" while the first call has no outcome yet.
4. The **capability** is decided at call time with the service's clock
   (:mod:`~services.broker.ext.capability`); a refusal is an ``ExtCallRefused`` event and an error.
5. **Backpressure**: at most ``max_in_flight_per_group`` calls of one group go out at once; the next gets
   "retry later" (nothing recorded, nothing sent).
6. The key is **claimed** by appending ``ExtCallStarted`` to the new ``broker/extcall/<folder>:<key>`` aggregate
   with optimistic concurrency (another broker replica that claimed it first wins).
7. The request goes out **signed** with the group's key (``X-Nanoclaw-Signature``) and the provider's token,
   no redirects followed; the answer (at most ``max_response_bytes``) is sealed into ``ExtCallFinished``.

Events carry an HMAC of the parameters, never the parameters, a token or a clear-text result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections import Counter
from typing import Any, AsyncIterator, Hashable

import aiohttp
import nats.errors

from events.catalogue.ext import ExtCallRefused
from events.catalogue.types import iso_utc
from events.errors import ConcurrencyError, EventStoreError
from events.repository import Repository
from services.broker.ext.calls import ExtCall
from services.broker.ext.capability import CapabilityError, ExtCapability, check_names, decide
from services.broker.ext.config import ExtConfig
from services.broker.ext.keys import SIGNATURE_HEADER, SealError, params_hash, seal, signature, unseal
from services.broker.ext.providers import CallRejected, PreparedCall, Provider
from services.harness.clock import Clock
from services.harness.emit import append_emit
from services.harness.service import Emit, Reply, Request

log = logging.getLogger("nanoclaw.broker.ext")

EXT_CALL_SUBJECT = "nc.ipc.*.ext_call"
_KEY = re.compile(r"[A-Za-z0-9._:@+-]{1,128}")


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it (so memory stays bounded)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class ExtBroker:
    """Args:
        config: the ``broker.ext`` settings.
        providers: provider name → provider (:func:`services.broker.ext.providers.build_providers`).
        master_key: the key the per-group keys derive from (None only when no provider is configured).
        repository: loads and saves the capability and call aggregates.
        clock: the time of expiry checks, signatures and event timestamps.
    """

    def __init__(self, config: ExtConfig, providers: dict[str, Provider], master_key: bytes | None,
                 repository: Repository, clock: Clock):
        self.config, self.providers, self._master = config, providers, master_key
        self.repository, self.clock = repository, clock
        self.locks = KeyedLocks()
        self.in_flight: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- the request -------------------------------------------------------------------------------------
    async def handle(self, req: Request, _deps: Any = None) -> Reply:
        """Serve one ``ext_call`` request. Answer ``{"ok": true, "result": {provider, idempotency_key, level,
        status, content_type, body, truncated, replayed}}`` when the provider answered (any HTTP status), or
        ``{"ok": false, "error"}`` naming why not ("retry later: …" when trying again later can succeed)."""
        folder = req.token(2)
        if not self.providers or self._master is None:
            return Reply.failure("external access is not set up: no providers in broker.ext.providers")
        try:
            name, key, product, run_id = _call_args(req.data)
            check_names(folder, name, product)
            provider = self.providers.get(name)
            if provider is None:
                raise CallRejected(f"unknown provider {name!r}; configured: {', '.join(sorted(self.providers))}")
            prepared = provider.prepare(req.data)
        except (CallRejected, CapabilityError) as exc:
            return Reply.failure(str(exc))
        phash = params_hash(self._master, folder, prepared.params)
        async with self.locks.hold((folder, key)):
            return await self._decide_and_call(folder, key, product, run_id, provider, prepared, phash)

    async def _decide_and_call(self, folder: str, key: str, product: str | None, run_id: str | None,
                               provider: Provider, prepared: PreparedCall, phash: str) -> Reply:
        call = await self.repository.get(ExtCall, ExtCall.create_id(folder, key))
        if call is not None:
            if call.params_hash != phash:
                return await self._refuse(folder, key, provider.name, product, prepared.level, 0, "key_reused", phash,
                                          f"idempotency key {key!r} was used for a different request; use a new key")
            if call.finished:
                return self._recorded(call, replayed=True)
            return Reply.failure(f"retry later: the call with idempotency key {key!r} started at {call.started_at} "
                                 "and has no outcome yet (if this persists, the broker stopped mid-call: check the "
                                 "provider, then use a new key)")
        if prepared.level == 0:
            return await self._refuse(folder, key, provider.name, product, 0, 0, "not_allowed", phash,
                                      f"provider {provider.name} allows no {prepared.method} to {prepared.host}")
        capability = await self.repository.get(ExtCapability, ExtCapability.create_id(folder, provider.name))
        verdict = decide(capability, folder, provider.name, prepared.level, product, self.clock.now())
        if not verdict.allowed:
            return await self._refuse(folder, key, provider.name, product, prepared.level, verdict.held,
                                      verdict.decision, phash, verdict.reason)
        limit = self.config.max_in_flight_per_group
        if self.in_flight[folder] >= limit:  # checked and counted with no await in between
            log.warning("group %s is at its limit of %d external calls in flight", folder, limit)
            return Reply.failure(f"retry later: group {folder} already has {limit} external calls in flight "
                                 f"(the limit); try again when one has finished")
        self.in_flight[folder] += 1
        try:
            return await self._claim_and_call(folder, key, product, run_id, provider, prepared, phash)
        finally:
            self.in_flight[folder] -= 1
            if self.in_flight[folder] <= 0:
                del self.in_flight[folder]

    async def _claim_and_call(self, folder: str, key: str, product: str | None, run_id: str | None,
                              provider: Provider, prepared: PreparedCall, phash: str) -> Reply:
        call = ExtCall.start(group_folder=folder, idempotency_key=key, provider=provider.name, product=product,
                             level=prepared.level, method=prepared.method, host=prepared.host, params_hash=phash,
                             run_id=run_id, now=self.clock.now())
        try:
            # Another replica's claim of the key carries the same msg id, so the store reports it as a
            # duplicate of ours rather than a conflict: either way the key is someone else's.
            claimed = await self.repository.save(call, msg_id=f"ext:{folder}:{key}:started")
            lost = claimed is None or claimed.duplicate
        except ConcurrencyError:
            lost = True
        if lost:
            return Reply.failure(f"retry later: the call with idempotency key {key!r} was just claimed by another "
                                 "broker; repeat it to get its result")
        loop = asyncio.get_running_loop()
        began = loop.time()
        result, error = await self._send(folder, provider, prepared)
        duration_ms = int((loop.time() - began) * 1000)
        assert self._master is not None
        sealed = seal(self._master, folder, key, json.dumps(result).encode()) if result is not None else None
        call.finish(status=result["status"] if result else 0, outcome="ok" if result else "failed",
                    duration_ms=duration_ms, result_sealed=sealed, error=error, now=self.clock.now())
        await self.repository.save(call, msg_id=f"ext:{folder}:{key}:finished")
        log.info("ext call %s %s by %s: %s", provider.name, prepared.method, folder,
                 result["status"] if result else error)
        return self._recorded(call, replayed=False, result=result)

    # ---- the outgoing request ----------------------------------------------------------------------------
    async def _send(self, folder: str, provider: Provider, prepared: PreparedCall) -> tuple[dict | None, str | None]:
        """Returns (result, None) when the provider answered, (None, error) when it could not be reached. The
        error names the exception type and host only: the URL may carry parameters."""
        assert self._master is not None
        timestamp = int(self.clock.now().timestamp())
        headers = {**prepared.headers, **provider.auth(),
                   SIGNATURE_HEADER: signature(self._master, timestamp, folder, prepared.method, prepared.host,
                                               prepared.path_qs, prepared.body)}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s),
                                                  cookie_jar=aiohttp.DummyCookieJar())  # nothing passes between groups
        limit = self.config.max_response_bytes
        try:
            async with self._session.request(prepared.method, prepared.url, data=prepared.body or None,
                                             headers=headers, allow_redirects=False) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > limit:
                        break
                content_type = response.headers.get("content-type", "")
                return {"status": response.status, "content_type": content_type,
                        "body": _decode(bytes(body[:limit]), content_type), "truncated": len(body) > limit}, None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("ext call %s %s to %s by %s failed: %s", provider.name, prepared.method, prepared.host,
                        folder, type(exc).__name__)
            return None, f"{type(exc).__name__} calling {prepared.host}"

    # ---- answers and the audit trail ---------------------------------------------------------------------
    def _recorded(self, call: ExtCall, replayed: bool, result: dict | None = None) -> Reply:
        key = call.idempotency_key
        if call.outcome != "ok":
            return Reply.failure(f"the call with idempotency key {key!r} failed: {call.error}; it is recorded as "
                                 "failed, so use a new key to try again")
        if result is None:
            assert self._master is not None and call.result_sealed is not None
            try:
                result = json.loads(unseal(self._master, call.group_folder, key, call.result_sealed))
            except SealError as exc:
                return Reply.failure(f"the call with idempotency key {key!r} was made (HTTP {call.status}) but {exc}")
        return Reply.success({"provider": call.provider, "idempotency_key": key, "level": call.level, **result,
                              "replayed": replayed})

    async def _refuse(self, folder: str, key: str, provider: str, product: str | None, required: int, held: int,
                      decision: str, phash: str, reason: str) -> Reply:
        event = ExtCallRefused(group_folder=folder, idempotency_key=key, provider=provider, product=product,
                               level_required=required, level_held=held, decision=decision,  # type: ignore[arg-type]
                               params_hash=phash, reason=reason, refused_at=iso_utc(self.clock.now()))
        try:
            await append_emit(self.repository.store, Emit.append(folder, event), source="broker",
                              msg_id=f"ext-refused:{folder}:{uuid.uuid4().hex}")
        except (EventStoreError, nats.errors.Error, asyncio.TimeoutError) as exc:
            # The call is refused either way; only its audit record is missing.
            log.error("could not record the refusal of %s for %s: %s", provider, folder, exc)
        log.info("ext call %s by %s refused (%s): %s", provider, folder, decision, reason)
        return Reply.failure(f"refused ({decision}): {reason}")


def _call_args(data: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    """(provider, idempotency key, product, run id). Raises: CallRejected naming the bad argument."""
    provider, key, product, run_id = (data.get(k) for k in ("provider", "idempotency_key", "product", "run_id"))
    if not isinstance(provider, str) or not provider:
        raise CallRejected("'provider' must name a configured provider")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise CallRejected("'idempotency_key' must be 1–128 of A-Z a-z 0-9 . _ : @ + -, unique per intended call "
                           "(repeat it to retry the same call)")
    if product is not None and not isinstance(product, str):
        raise CallRejected("'product' must be a string")
    return provider, key, product or None, run_id if isinstance(run_id, str) else None


def _decode(body: bytes, content_type: str) -> Any:
    """JSON bodies as JSON (when they parse whole), everything else as text."""
    if "json" in content_type.lower():
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            pass
    return body.decode("utf-8", "replace")
