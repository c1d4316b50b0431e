"""The product aggregate (``governance.product/<product id>``): the registry of products that tasks belong to."""

from __future__ import annotations

import re
from typing import Any, get_args

from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.governance import PRODUCT_ID_PATTERN, ProductStatus, RiskLevel
from services.governance.errors import GovernanceError

STATUSES: tuple[str, ...] = get_args(ProductStatus)
RISK_LEVELS: tuple[str, ...] = get_args(RiskLevel)


def check_product_fields(product_id: str | None = None, name: str | None = None, status: str | None = None,
                         risk_level: str | None = None) -> None:
    """Raises: GovernanceError naming the first bad field (id pattern, empty name, unknown status or risk)."""
    if product_id is not None and not re.fullmatch(PRODUCT_ID_PATTERN, product_id):
        raise GovernanceError(f"product id {product_id!r} must match {PRODUCT_ID_PATTERN} (lowercase, digits, - and _)")
    if name is not None and not name.strip():
        raise GovernanceError("a product needs a non-empty name")
    if status is not None and status not in STATUSES:
        raise GovernanceError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if risk_level is not None and risk_level not in RISK_LEVELS:
        raise GovernanceError(f"risk level {risk_level!r} is not one of {', '.join(RISK_LEVELS)}")


class Product(NcAggregate):
    CONTEXT, TYPE = "governance", "product"

    @staticmethod
    def create_id(product_id: str, **_: Any) -> str:
        return product_id

    @classmethod
    def register(cls, *, product_id: str, name: str, status: str, risk_level: str, actor: str, at: str) -> "Product":
        """Raises: GovernanceError for a bad field."""
        check_product_fields(product_id, name, status, risk_level)
        return cls(product_id=product_id, name=name.strip(), status=status, risk_level=risk_level, actor=actor, at=at)

    @event("GovProductRegistered")
    def __init__(self, product_id: str, name: str, status: str, risk_level: str, actor: str, at: str):
        self.product_id, self.name, self.status, self.risk_level = product_id, name, status, risk_level

    def update(self, *, name: str | None, status: str | None, risk_level: str | None, actor: str, at: str) -> None:
        """Raises: GovernanceError for a bad field or when nothing would change."""
        check_product_fields(None, name, status, risk_level)
        if all(v is None for v in (name, status, risk_level)):
            raise GovernanceError("nothing to update: give at least one of name, status, risk_level")
        self._updated(product_id=self.id, name=name.strip() if name else None, status=status, risk_level=risk_level,
                      actor=actor, at=at)

    @event("GovProductUpdated")
    def _updated(self, product_id: str, name: str | None, status: str | None, risk_level: str | None, actor: str,
                 at: str) -> None:
        self.name = name or self.name
        self.status = status or self.status
        self.risk_level = risk_level or self.risk_level
