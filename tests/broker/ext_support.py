"""Running the broker with the external-access broker on a real nats-server, against :class:`ExtStub`."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from events.repository import Repository
from services.broker.ext import EXT_CALL_SUBJECT, ExtBroker
from services.broker.ext.capability import ExtCapability
from services.broker.service import build as build_broker
from services.harness.config import Credentials
from services.harness.runner import ServiceRunner
from tests.broker.ext_stub import ExtStub
from tests.bus import ask, context, running, settings
from tests.clock import T0, FakeClock

MASTER = "ext-master-key-for-tests-0123456789"
GH_TOKEN = "ghp_REALtokenNEVERinAsandbox0123456789"
WEB_TOKEN = "web-api-token-NEVER-in-a-sandbox"
RUN_KEY = "test-run-token-key-0123456789abcdef"


def creds(master: str | None = MASTER) -> Credentials:
    ext: dict[str, Any] = {"tokens": {"github": GH_TOKEN, "web": WEB_TOKEN}}
    if master:
        ext["master_key"] = master
    return Credentials(run_token_key=RUN_KEY, anthropic_api_key="sk-ant-unused", ext=ext)


def providers(stub: ExtStub) -> dict:
    return {"github": {"kind": "github", "base_url": stub.url},
            "web": {"kind": "http", "allow_plain_http": True, "auth_header": "X-Api-Key", "auth_scheme": "",
                    "levels": {1: {"hosts": [stub.host], "methods": ["GET"]},
                               2: {"hosts": ["127.0.0.1"], "methods": ["POST", "PUT"]}}}}


def ext_of(runner: ServiceRunner) -> ExtBroker:
    return runner.service.requests[EXT_CALL_SUBJECT].__self__


@contextlib.asynccontextmanager
async def ext_broker(nc, store, tmp_path, stub: ExtStub, clock: FakeClock, credentials: Credentials | None = None,
                     **ext) -> AsyncIterator[ServiceRunner]:
    s = settings(tmp_path, broker={"model_proxy": {"port": 0, "upstream_url": "http://127.0.0.1:9"},
                                   "ext": {"providers": providers(stub), **ext}})
    async with running(lambda ctx: build_broker(ctx, clock=clock), context(nc, store, s, credentials or creds())) as r:
        yield r


async def ext_call(nc, folder: str, /, **args) -> dict:
    """The agent's side of the tool: one NATS request on ``nc.ipc.<folder>.ext_call``."""
    return await ask(nc, folder, "ext_call", args, timeout=15)


async def grant(store, folder: str, provider: str, level: int, product: str | None = None,
                approvers: tuple[str, ...] = ("alice",), at=T0) -> None:
    """What `nanoclaw ext grant` does: a grant on the group × provider capability aggregate."""
    await change(store, folder, provider, lambda c, gid: c.grant(grant_id=gid, level=level, product=product,
                                                                 approvers=list(approvers), reason="test", now=at))


async def change(store, folder: str, provider: str, apply) -> None:
    repo = Repository(store, "test")
    capability = await repo.get(ExtCapability, f"{folder}:{provider}") or ExtCapability.open(folder, provider)
    apply(capability, f"g{len(capability.grants) + 1}")
    await repo.save(capability)
