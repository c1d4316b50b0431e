"""The model proxy: the sandbox's only way to Claude.

A sandboxed agent calls ``http://<host>:<port>/v1/…`` with its per-run token as the API key (the Claude CLI
sends ``ANTHROPIC_API_KEY`` as ``x-api-key``; ``Authorization: Bearer`` is accepted too). The proxy

1. checks the token (:mod:`services.harness.run_token`): missing, bad, forged or expired → 401, nothing goes
   upstream and nothing is recorded (so nobody without a token can write to the event log);
2. forwards only ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``, matched on the method and the
   raw path (:mod:`services.broker.proxy_policy`; the query, e.g. ``?beta=true``, passes). Anything else →
   403 ``permission_error`` naming the allowed endpoints, nothing upstream, and a ``SandboxRequestRefused``
   event (surface ``model_proxy``; at most ``refusals_recorded_per_minute`` per run, the rest only logged).
   403 because the Anthropic clients do not retry it (they retry 408, 409, 429 and 5xx), and
   ``x-should-retry: false`` says so to any client that reads it;
3. checks the group's budget (Messages calls only): spent ≥ budget → 402 ``billing_error`` and a
   ``ModelRequestRefused`` event. 402 rather than 429 because the Anthropic clients retry 429 (and 5xx) with
   back-off but not 402, so the run fails at once with the message instead of retrying into the same refusal;
4. swaps the token for the real credential: ``x-api-key: <anthropic_api_key>``, or, when only
   ``claude_code_oauth_token`` is configured, ``Authorization: Bearer <token>`` plus the ``oauth-2025-04-20``
   beta merged into ``anthropic-beta`` (what the Claude CLI sends when logged in with OAuth; the API rejects
   OAuth bearer tokens for most models without it). No credential, or the API answers 401/403 to it → 403
   ``permission_error`` (not retried by the CLI) naming the problem, and ``ModelCredentialFailed`` once per run
   (:mod:`services.broker.credential_failures`);
5. forwards method, the allowlisted path, query, body and headers, and streams the response back chunk by chunk
   as it arrives (SSE is never buffered), metering ``usage`` on the way (:mod:`services.broker.usage`);
6. records a ``ModelUsageRecorded`` event (aggregate: the group folder) for **every** forwarded call, with its
   ``endpoint``: a Messages call with the tokens and the cost from :mod:`services.broker.pricing`, a
   ``count_tokens`` call with zero tokens and cost (it is free upstream). Recorded after the last chunk and
   before ending the response (so a client's next call is checked against it); a call cut off mid-stream is
   recorded with what it used.

Errors the proxy makes itself use Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``.
Neither the token nor the real credential is ever logged, recorded or echoed.

Budgets are checked when a call starts: calls already in flight for the same group can each finish, so a group
can overshoot its budget by the cost of its concurrent calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping

import aiohttp
import nats.errors
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from events.catalogue.broker import ModelRequestRefused, ModelUsageRecorded
from events.errors import EventStoreError
from events.store.port import EventStore
from projections.readmodel import LocalReadModel, ReadModelTimeout
from projections.usage import spent_usd
from services.broker.config import ModelProxyConfig
from services.broker.credential_failures import REJECTED_STATUSES, CredentialFailures, rejected_message
from services.broker.pricing import cost_usd
from services.broker.proxy_policy import ALLOWED_TEXT, RefusalThrottle, Target, forwarded_endpoint
from services.broker.usage import Usage, UsageMeter
from services.harness.run_token import InvalidRunToken, RunClaims, verify
from services.harness.emit import append_emit
from services.harness.refusals import record_refusal
from services.harness.service import Emit

log = logging.getLogger("nanoclaw.broker.model_proxy")

OAUTH_BETA = "oauth-2025-04-20"
MAX_REQUEST_BYTES = 32 << 20  # the Messages API's own request size limit (32 MB)
LEDGER_WAIT_S = 10.0
NO_CREDENTIAL = ("the model proxy has no Claude credential: set anthropic_api_key (or claude_code_oauth_token) in "
                 "credentials.yml, or NANOCLAW_CRED_ANTHROPIC_API_KEY / NANOCLAW_CRED_CLAUDE_CODE_OAUTH_TOKEN, "
                 "and restart the broker")

# Hop-by-hop headers (RFC 9110 §7.6.1) and what the proxy itself sets; never copied across.
_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length", "expect"}
_REQUEST_DROP = _HOP | {"x-api-key", "authorization", "accept-encoding", "cookie"}
_RESPONSE_DROP = _HOP | {"content-encoding", "set-cookie"}  # the body is passed on decompressed


@dataclass(frozen=True)
class UpstreamCredential:
    """The headers that authenticate to the upstream API. ``repr`` never shows them."""

    kind: str  # "api_key" | "oauth"
    _secret: str = field(repr=False)

    def apply(self, headers: CIMultiDict) -> None:
        if self.kind == "api_key":
            headers["x-api-key"] = self._secret
            return
        headers["authorization"] = f"Bearer {self._secret}"
        betas = [b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()]
        if OAUTH_BETA not in betas:
            headers["anthropic-beta"] = ",".join([*betas, OAUTH_BETA])


def upstream_credential(api_key: str | None, oauth_token: str | None) -> UpstreamCredential | None:
    """The API key if configured (it works for every endpoint), else the OAuth token, else None."""
    if api_key:
        return UpstreamCredential("api_key", api_key)
    if oauth_token:
        return UpstreamCredential("oauth", oauth_token)
    return None


class ModelProxy:
    """Args:
        config: the ``broker.model_proxy`` settings.
        token_key: the HMAC key run tokens are signed with.
        credential: the real credential, or None (every call then gets 403 and is recorded as ``ModelCredentialFailed``).
        store: where usage and refusal events go.
        readmodel: the broker's read model holding the ``model_usage`` projection (budgets).
        clock: Unix time in seconds (tests inject one to expire tokens).
    """

    def __init__(self, config: ModelProxyConfig, token_key: bytes, credential: UpstreamCredential | None,
                 store: EventStore, readmodel: LocalReadModel, clock: Callable[[], float] = time.time):
        self.config, self._key, self._credential = config, token_key, credential
        self.store, self.readmodel, self.clock = store, readmodel, clock
        self._throttle = RefusalThrottle(config.refusals_recorded_per_minute)
        self._credential_failures = CredentialFailures(self._append)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port: int | None = None

    # ---- server ------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        # No routes: every request goes to _handle through this middleware, including targets aiohttp's router
        # would answer itself with a plain-text 404 (``OPTIONS *``, ``CONNECT host:443``), so each one gets the
        # token check, the allowlist and an Anthropic-shaped answer.
        @web.middleware
        async def every_request(request: web.Request, handler) -> web.StreamResponse:  # noqa: ARG001
            return await self._handle(request)

        return web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[every_request])

    async def serve(self) -> None:
        t = self.config.request_timeout_s
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t),
            cookie_jar=aiohttp.DummyCookieJar(),  # runs share the session: no state may pass between them
            auto_decompress=True)
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("model proxy listening on http://%s:%s → %s (credential: %s)", self.config.host, self.port,
                 self.config.upstream_url, self._credential.kind if self._credential else "none")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ---- one call ----------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        target = Target.of(request.raw_path)
        token = presented_token(request.headers)
        if token is None:
            return _error(401, "authentication_error", "no run token: send it as x-api-key or Authorization: Bearer")
        try:
            claims = verify(self._key, token, self.clock())
        except InvalidRunToken as exc:
            log.warning("refused %s %s: invalid run token (%s)", request.method, target.shown, exc.reason)
            return _error(401, "authentication_error", f"invalid run token ({exc.reason})")
        endpoint = forwarded_endpoint(request.method, target)
        if endpoint is None:  # checked before the body is read: a refused upload is never taken in
            return await self._refuse(claims, request.method, target)
        if self._credential is None:
            log.error("refused a call of run %s: %s", claims.run_id, NO_CREDENTIAL)
            return await self._credential_failures.answer(claims, "missing", 0, NO_CREDENTIAL)
        if endpoint == "messages" and (refusal := await self._check_budget(claims)) is not None:
            return refusal
        body = await request.read()
        return await self._forward(request, target, body, claims, endpoint)

    async def _refuse(self, claims: RunClaims, method: str, target: Target) -> web.Response:
        """403 for an endpoint outside the allowlist, recorded as ``SandboxRequestRefused`` unless the run has
        used up its recorded refusals for now (then only counted; the next recorded one says how many)."""
        operation = f"{method} {target.shown}"
        reason = f"the model proxy forwards only {ALLOWED_TEXT}; it refused {operation}"
        skipped = self._throttle.admit(claims.run_id)
        if skipped is None:
            log.debug("refusal of %s for run %s not recorded (rate limit)", operation, claims.run_id)
        else:
            note = f" ({skipped} more refusals of this run were not recorded: rate limit)" if skipped else ""
            await record_refusal(self.store, service="broker", group_folder=claims.group_folder,
                                 run_id=claims.run_id, surface="model_proxy", operation=operation,
                                 reason=reason + note)
        response = _error(403, "permission_error", reason)
        response.headers["x-should-retry"] = "false"
        return response

    async def _forward(self, request: web.Request, target: Target, body: bytes, claims: RunClaims,
                       endpoint: str) -> web.StreamResponse:
        assert self._session is not None and self._credential is not None
        headers = forward_headers(request.headers)
        self._credential.apply(headers)
        # target.path is exactly an allowlisted path here (forwarded_endpoint), so the URL cannot name another.
        query = f"?{target.query}" if target.query else ""
        url = URL(self.config.upstream_url + target.path + query, encoded=True)
        try:
            upstream = await self._session.request(request.method, url, headers=headers, data=body,
                                                   allow_redirects=False)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("upstream %s failed for run %s: %s", self.config.upstream_url, claims.run_id, type(exc).__name__)
            return _error(502, "api_error", f"the model proxy could not reach {self.config.upstream_url}: "
                                            f"{type(exc).__name__}")
        if upstream.status in REJECTED_STATUSES:  # the credential itself: never worth a retry (credential_failures.py)
            upstream.release()
            log.error("the model API rejected the credential (HTTP %s) for run %s", upstream.status, claims.run_id)
            await self._record_usage(claims, endpoint, upstream.status, Usage(), _requested_model(body))
            return await self._credential_failures.answer(claims, "rejected", upstream.status,
                                                          rejected_message(upstream.status))
        meter = UsageMeter(upstream.headers.get("content-type", ""))
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=response_headers(upstream.headers))
        completed = False
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                meter.feed(chunk)
                await response.write(chunk)
            completed = True
            upstream.release()
            # Recorded before the response ends, so a client's next call (budget check) always counts this one.
            await self._record_usage(claims, endpoint, upstream.status, meter.finish(), _requested_model(body))
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # Headers are gone already: all that is left is to stop; the client sees a cut-off stream.
            log.warning("stream for run %s ended early: %s", claims.run_id, type(exc).__name__)
        finally:
            if not completed:
                upstream.close()  # drop the upstream connection, so generation (and its cost) stops
                # The tokens generated so far are still charged upstream.
                await self._record_usage(claims, endpoint, upstream.status, meter.finish(), _requested_model(body))
        return response

    # ---- ledger ------------------------------------------------------------------------------------------
    async def _check_budget(self, claims: RunClaims) -> web.Response | None:
        budget = self.config.budgets_usd.get(claims.group_folder)
        if budget is None:
            return None
        try:
            # Everything appended so far (including this proxy's last usage event) must be counted.
            await self.readmodel.wait_for(await self.store.last_seq(), timeout=LEDGER_WAIT_S)
        except (EventStoreError, ReadModelTimeout, nats.errors.Error, asyncio.TimeoutError) as exc:
            log.error("cannot check the budget of %s: %s", claims.group_folder, exc)
            return _error(503, "api_error", f"the usage ledger is unavailable, so the budget of group "
                                            f"{claims.group_folder} cannot be checked; try again later")
        spent = spent_usd(self.readmodel.db, claims.group_folder)
        if spent < budget:
            return None
        reason = f"budget of ${usd(budget)} for group {claims.group_folder} is spent (${usd(spent)} used)"
        log.warning("refused a call of run %s: %s", claims.run_id, reason)
        refused = ModelRequestRefused(run_id=claims.run_id, group_folder=claims.group_folder, reason=reason,
                                      spent_usd=spent, budget_usd=budget)
        await self._append(Emit.append(claims.group_folder, refused), f"refused:{claims.run_id}:{uuid.uuid4().hex}")
        return _error(402, "billing_error", reason)

    async def _record_usage(self, claims: RunClaims, endpoint: str, status: int, usage: Usage,
                            requested: str | None) -> None:
        """``usage`` as metered from the response; for ``count_tokens`` it is zero whatever the body says (its
        ``input_tokens`` is the count asked for, not tokens consumed)."""
        model = usage.model or requested or "unknown"
        if endpoint != "messages":
            usage = Usage()
        event = ModelUsageRecorded(
            run_id=claims.run_id, group_folder=claims.group_folder, model=model, status=status,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens, cost_usd=cost_usd(model, usage),
            endpoint=endpoint)
        await self._append(Emit.append(claims.group_folder, event), f"usage:{claims.run_id}:{uuid.uuid4().hex}")

    async def _append(self, emit: Emit, msg_id: str) -> None:
        """Append, logging (not raising) a failure: the HTTP answer must not depend on the ledger being up."""
        try:
            await append_emit(self.store, emit, source="broker", msg_id=msg_id)
        except (EventStoreError, nats.errors.Error, asyncio.TimeoutError) as exc:
            payload = emit.payloads[0]
            log.error("could not record %s for group %s: %s (%s)", type(payload).__name__, emit.aggregate.id, exc,
                      payload.model_dump(exclude={"reason"}))


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The run token from ``x-api-key``, else from ``Authorization: Bearer``; None if neither is there."""
    if key := headers.get("x-api-key", "").strip():
        return key
    scheme, _, value = headers.get("authorization", "").strip().partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


def forward_headers(incoming: Mapping[str, str]) -> CIMultiDict:
    """The client's headers minus hop-by-hop, its credentials and its Accept-Encoding (the proxy asks for
    encodings it can decode itself, to meter the body)."""
    named = {h.strip().lower() for h in incoming.get("connection", "").split(",")}
    out = CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in _REQUEST_DROP and k.lower() not in named)
    out["accept-encoding"] = "gzip, deflate"
    return out


def response_headers(upstream: Mapping[str, str]) -> CIMultiDict:
    return CIMultiDict((k, v) for k, v in upstream.items() if k.lower() not in _RESPONSE_DROP)


def usd(amount: float) -> str:
    """Dollars for a message: cents for ordinary amounts, significant digits for tiny ones (test budgets)."""
    return f"{amount:,.2f}" if amount == 0 or amount >= 0.01 else f"{amount:.2g}"


def _requested_model(body: bytes) -> str | None:
    """The ``model`` of a JSON request body (used only when the response named none, e.g. an error)."""
    try:
        model = json.loads(body).get("model")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return model if isinstance(model, str) else None


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)
