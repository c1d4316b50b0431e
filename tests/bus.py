"""Test helpers to run real services on a real nats-server (used by service-level tests)."""

from __future__ import annotations

import contextlib
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
