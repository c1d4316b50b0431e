"""The composition root's list of services: name → builder. The only module that imports every service."""

from __future__ import annotations

from services.broker.service import build as build_broker
from services.gateway.service import build as build_gateway
from services.governance.service import build as build_governance
from services.harness.host import Builder
from services.projector.service import build as build_projections
from services.queue.service import build as build_queue
from services.router.service import build as build_router
from services.runner.service import build as build_runner
from services.scheduler.service import build as build_scheduler


def builders() -> dict[str, Builder]:
    return {"gateway": build_gateway, "router": build_router, "queue": build_queue, "runner": build_runner, "scheduler": build_scheduler,
            "broker": build_broker, "projections": build_projections, "governance": build_governance}
