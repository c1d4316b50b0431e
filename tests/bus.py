"""Test helpers to run real services on a real nats-server (used by service-level tests)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import AsyncIterator, Callable

from events.repository import Repository
from events.store.jetstream import JetStreamEventStore
from services.harness.config import Credentials, HarnessSettings, Settings
from services.harness.context import ServiceContext
from services.harness.metrics import Metrics
from services.harness.runner import ServiceRunner
from services.harness.service import Service

FAST = HarnessSettings(max_deliver=3, retry_delays_s=[0.05], ack_wait_s=5)
REQUEST_TIMEOUT = 30.0
"""A bound on one tool request, never a speed claim."""


def settings(tmp_path: Path, **overrides) -> Settings:
    return Settings(data_dir=tmp_path / "data", timezone="UTC", harness=FAST, **overrides)


def context(nc, store: JetStreamEventStore, s: Settings, credentials: Credentials | None = None) -> ServiceContext:
    return ServiceContext(s, credentials or Credentials(), nc, store, Metrics())


@contextlib.asynccontextmanager
async def running(build: Callable[[ServiceContext], Service], ctx: ServiceContext) -> AsyncIterator[ServiceRunner]:
    runner = ServiceRunner(build(ctx), ctx.nc, ctx.store, ctx.settings.harness, ctx.metrics)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def events_of(store: JetStreamEventStore, event_type: str) -> list:
    out = []
    async for c in store.read():
        out += [e.payload() for e in c.events if e.eventtype == event_type]
    return out


def repo(store) -> Repository:
    return Repository(store, "test")


async def ask_subject(nc, subject: str, body=None, *, raw: bytes | None = None, request_id: str | None = None,
                      timeout: float = REQUEST_TIMEOUT) -> dict:
    """One agent tool call as a NATS request on ``subject``: ``body`` as JSON (``{}`` when None) or ``raw`` bytes
    as they are, with an ``Nc-Request-Id`` header when ``request_id`` is given; returns the decoded answer."""
    data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    headers = {"Nc-Request-Id": request_id} if request_id else None
    msg = await nc.request(subject, data, timeout=timeout, headers=headers)
    return json.loads(msg.data)


async def ask(nc, folder: str, tool: str, body=None, **kwargs) -> dict:
    """The tool call of group ``folder``: :func:`ask_subject` on ``nc.ipc.<folder>.<tool>``."""
    return await ask_subject(nc, f"nc.ipc.{folder}.{tool}", body, **kwargs)


def refused(reply: dict, *words: str) -> bool:
    """A tool answer that refuses, with every one of ``words`` in its error."""
    return reply["ok"] is False and all(w in reply["error"] for w in words)


async def refusals_since(store: JetStreamEventStore, seq: int) -> list:
    """The ``SandboxRequestRefused`` events stored after stream sequence ``seq``, failing if anything else was
    stored (a refused request has no other effect)."""
    out = []
    async for c in store.read(after_seq=seq):
        assert [e.eventtype for e in c.events] == ["SandboxRequestRefused"], c.events
        out.append(c.events[0].payload())
    return out
