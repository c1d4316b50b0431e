"""The composition root's list of services: name → builder. The only module that imports every service."""

from __future__ import annotations

from services.harness.host import Builder
from services.gateway.service import build as build_gateway
from services.projector.service import build as build_projections
from services.router.service import build as build_router


def builders() -> dict[str, Builder]:
    return {"gateway": build_gateway, "router": build_router, "projections": build_projections}
