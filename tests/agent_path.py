"""Run the whole system as `nanoclaw up` does (every service in one process, the embedded NATS with per-run
users) against a stub Messages API, for the end-to-end agent tests."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import AsyncIterator

from pydantic import SecretStr

from events.store.jetstream import JetStreamEventStore
from services.cli.registry import builders
from services.harness.config import Credentials
from services.harness.host import Host, embedded_host
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsserver import EmbeddedNats, free_port
from tests.bus import settings
from tests.stub_anthropic import StubAnthropic

REAL_KEY = "sk-ant-real-key-never-in-a-sandbox"


@contextlib.asynccontextmanager
async def system(tmp_path: Path, stub: StubAnthropic, *, backend: str = "process", runner: dict | None = None,
                 image: str | None = None) -> AsyncIterator[tuple[Host, JetStreamEventStore, EmbeddedNats]]:
    server = EmbeddedNats(tmp_path / "nats", sync_always=False, auth=EmbeddedAuth(tmp_path / "auth.conf")).start()
    proxy_port = free_port()
    runner_cfg = {"backend": backend, "model_proxy_url": f"http://127.0.0.1:{proxy_port}", **(runner or {})}
    if image:
        runner_cfg["image"] = image
    s = settings(tmp_path, channels={"http": {"port": 0}},
                 services=list(builders()), runner=runner_cfg,
                 broker={"model_proxy": {"port": proxy_port, "upstream_url": stub.url}})
    creds = Credentials(anthropic_api_key=SecretStr(REAL_KEY), run_token_key=SecretStr("k" * 32))
    host = embedded_host(s, creds, builders(), server)
    await host.start()
    try:
        yield host, JetStreamEventStore(host.nc), server
    finally:
        await host.stop()
        server.stop()


def service(host: Host, name: str):
    return next(r for r in host.runners if r.service.name == name).service


def http_port(host: Host) -> int:
    return service(host, "gateway").deps.channels["http"].port
