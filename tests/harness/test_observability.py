"""Health, readiness, metrics and structured logs of a running service."""

from __future__ import annotations

import json
import logging

from aiohttp.test_utils import TestClient, TestServer

from services.harness.logging import setup_logging
from services.harness.metrics import Metrics
from services.harness.runner import ServiceRunner
from services.harness.service import Emit, Service
from services.harness.status import status_app
from tests.harness.test_runner import FAST, PongSent, ping, pongs
from tests.support import eventually, equals


async def test_status_endpoints_report_health_readiness_and_prometheus_metrics(nc, js_store):
    metrics = Metrics()

    async def reply(d, deps):
        return [Emit.new(f"pong{d.payload.n}", PongSent(n=d.payload.n))]

    runner = ServiceRunner(Service("pinger", {"PingSent": reply}), nc, js_store, FAST, metrics)
    app = status_app(metrics, lambda: {"pinger": {"healthy": runner.healthy, "ready": runner.ready}})
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/readyz")).status == 503  # not started yet
        await runner.start()
        await ping(js_store, 1)
        await eventually(lambda: equals(pongs(js_store), [1]))
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert ready.status == 200 and (await ready.json())["services"]["pinger"]["ready"] is True
        text = await (await client.get("/metrics")).text()
        assert 'nanoclaw_messages_handled_total{event_type="PingSent",service="pinger"} 1.0' in text
        assert "nanoclaw_handler_seconds_count" in text and "nanoclaw_consumer_lag" in text
        await runner.stop()
        assert (await client.get("/readyz")).status == 503


async def test_log_lines_are_json_with_service_event_type_and_correlation_id(nc, js_store, tmp_path):
    setup_logging("INFO", tmp_path / "logs", console=False)
    try:
        async def reply(d, deps):
            logging.getLogger("test.handler").info("handling ping %s", d.payload.n)
            return []

        runner = ServiceRunner(Service("pinger", {"PingSent": reply}), nc, js_store, FAST)
        await runner.start()
        await ping(js_store, 3)
        log_file = tmp_path / "logs" / "nanoclaw.log"
        await eventually(lambda: log_file.exists() and "handling ping 3" in log_file.read_text())
        await runner.stop()
    finally:
        setup_logging("INFO", None, console=False)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    handled = next(line for line in lines if line["event"] == "handling ping 3")
    event = [c async for c in js_store.read()][0].events[0]
    assert handled["service"] == "pinger" and handled["event_type"] == "PingSent"
    assert handled["correlation_id"] == event.correlationid and handled["level"] == "info" and "timestamp" in handled
