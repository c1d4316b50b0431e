"""HTTP status endpoint of a process: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``
(Prometheus text format). Bound to loopback by default; containers use it for their health checks."""

from __future__ import annotations

from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.harness.metrics import Metrics


def status_app(metrics: Metrics, checks: Callable[[], dict[str, dict[str, bool]]]) -> web.Application:
    """``checks()`` returns ``{service: {"healthy": bool, "ready": bool}}``."""

    async def healthz(_: web.Request) -> web.Response:
        state = checks()
        ok = all(s["healthy"] for s in state.values())
        return web.json_response({"ok": ok, "services": state}, status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        state = checks()
        ok = all(s["ready"] for s in state.values())
        return web.json_response({"ok": ok, "services": state}, status=200 if ok else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics_view)])
    return app


async def start_status_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
