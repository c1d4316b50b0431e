"""The broker service: the model proxy as a service task, with a private read model of model usage (budgets),
and the external-access broker serving the agents' ``ext_call`` requests (docs/external-access.md)."""

from __future__ import annotations

import asyncio
import logging

from projections.readmodel import LocalReadModel
from projections.usage import UsageProjection
from services.broker.config import BrokerConfig
from services.broker.ext import EXT_CALL_SUBJECT, ExtBroker, build_ext
from services.broker.model_proxy import NO_CREDENTIAL, ModelProxy, upstream_credential
from services.harness.clock import Clock, SystemClock
from services.harness.config import ConfigError, Credentials
from services.harness.context import ServiceContext
from services.harness.run_token import MIN_KEY_BYTES
from services.harness.service import Service

log = logging.getLogger("nanoclaw.broker")


def build(ctx: ServiceContext, clock: Clock | None = None) -> Service:
    """``clock``: for tests (default: the system clock); the external-access broker checks grant expiry with it.

    Raises: pydantic.ValidationError for an invalid ``broker:`` section; ConfigError when ``run_token_key``
    is missing or too short, or when external providers are configured without ``ext.master_key``. A missing
    Claude credential is not fatal: the proxy starts and answers 503 with what to set, so the agent's error
    says it too."""
    config = BrokerConfig.model_validate(ctx.settings.broker)
    key = run_token_key(ctx.credentials)
    creds = ctx.credentials
    credential = upstream_credential(
        creds.anthropic_api_key.get_secret_value() if creds.anthropic_api_key else None,
        creds.claude_code_oauth_token.get_secret_value() if creds.claude_code_oauth_token else None)
    if credential is None:
        log.warning("%s", NO_CREDENTIAL)
    readmodel = LocalReadModel(ctx.data_dir / "broker" / "readmodel.db", [UsageProjection()], ctx.store)
    proxy = ModelProxy(config.model_proxy, key, credential, ctx.store, readmodel)
    ext = build_ext(config.ext, creds.ext, ctx.repository("broker"), clock or SystemClock())

    async def serve(_proxy: ModelProxy) -> None:
        await _serve(proxy, ext)

    return Service("broker", deps=proxy, tasks=[serve], readmodel=readmodel,
                   requests={EXT_CALL_SUBJECT: ext.handle})


def run_token_key(credentials: Credentials) -> bytes:
    """The HMAC key for run tokens, shared with the runner.

    Raises:
        ConfigError: not set, or shorter than 16 bytes.
    """
    secret = credentials.run_token_key.get_secret_value() if credentials.run_token_key else ""
    if not secret:
        raise ConfigError("credentials: run_token_key is not set; the broker checks per-run model-proxy tokens with "
                          "it (set it in credentials.yml or NANOCLAW_CRED_RUN_TOKEN_KEY, the same value the runner "
                          "uses; `nanoclaw up` makes one per start)")
    key = secret.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"credentials: run_token_key is shorter than {MIN_KEY_BYTES} bytes; use a random value "
                          "such as the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return key


async def _serve(proxy: ModelProxy, ext: ExtBroker) -> None:
    """The model proxy's HTTP server, and the external-access broker's HTTP session, until the service stops."""
    try:
        await proxy.serve()
        await asyncio.Event().wait()
    finally:
        await proxy.close()
        await ext.close()
