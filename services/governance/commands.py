"""Governance commands shared by the agents' IPC tools and the ``nanoclaw gov`` CLI: check the input and the
requester's authority, load the aggregate, check the expected version, apply. Each returns the changed
aggregate, unsaved: the caller stores it as one commit (the IPC reply's emit, or ``Repository.save`` in the
CLI) with the aggregate's last sequence as the expectation, so a save racing another one is refused by
JetStream (``ConcurrencyError``).

Every function raises :class:`~services.governance.errors.GovernanceError` (or a subclass) naming the problem.
"""

from __future__ import annotations

import re
import uuid
from typing import Callable

from events.catalogue.governance import TASK_ID_PATTERN
from events.repository import Repository
from services.governance.config import NO_GATE, GovernanceConfig
from services.governance.errors import GovernanceError, NotFound
from services.governance.policy import DEVELOPER, MAIN, Requester, authorize_approve, authorize_move, require
from services.governance.product import Product
from services.governance.states import check_transition
from services.governance.task import GovTask

_TASK_NS = uuid.UUID("0b9e5a56-7c1d-4f63-9d5e-2b8f3c6a1e47")

RolesOf = Callable[[str], frozenset[str]]
"""folder → the roles it holds (empty for an unknown folder)."""


def new_task_id(seed: str | None = None) -> str:
    """``gt-`` + 12 hex digits; deterministic for a given ``seed`` (a retried request maps to the same task)."""
    value = uuid.uuid5(_TASK_NS, seed) if seed is not None else uuid.uuid4()
    return f"gt-{value.hex[:12]}"


def normalise_gates(gates: list[str], config: GovernanceConfig) -> list[str]:
    """Drop ``none``; refuse gates that are not configured. Raises: GovernanceError naming the known gates."""
    out = [g for g in gates if g != NO_GATE]
    unknown = [g for g in out if g not in config.gates]
    if unknown:
        raise GovernanceError(f"unknown gate(s) {', '.join(unknown)}; gates: {', '.join(sorted(config.gates))}, none")
    return out


async def load_task(repo: Repository, task_id: str) -> GovTask:
    """Raises: NotFound."""
    task = await repo.get(GovTask, task_id)
    if task is None:
        raise NotFound(f"no governance task {task_id!r}")
    return task


def _check_assignee(assignee: str, roles_of: RolesOf) -> None:
    if not ({DEVELOPER, MAIN} & roles_of(assignee)):
        raise GovernanceError(f"cannot assign to {assignee!r}: only a folder holding the developer (or main) role "
                              "executes tasks")


async def create_task(repo: Repository, config: GovernanceConfig, requester: Requester, *, task_id: str, title: str,
                      description: str, product_id: str | None, gates: list[str], assignee: str | None, reason: str,
                      at: str, roles_of: RolesOf) -> GovTask:
    """A new task in INBOX. Raises: NotAuthorized (needs main or developer), GovernanceError (bad id, unknown
    product or gate, an assignee without the developer role, an existing id)."""
    require(requester, "create governance tasks", MAIN, DEVELOPER)
    if not re.fullmatch(TASK_ID_PATTERN, task_id):
        raise GovernanceError(f"task id {task_id!r} must match {TASK_ID_PATTERN}")
    gates = normalise_gates(gates, config)
    if product_id is not None and await repo.get(Product, product_id) is None:
        raise NotFound(f"no product {product_id!r}; register it first (gov products add / gov_product_save)")
    if assignee is not None:
        if not requester.has(MAIN):
            raise GovernanceError("only main assigns tasks; leave assignee empty")
        _check_assignee(assignee, roles_of)
    if await repo.get(GovTask, task_id) is not None:
        raise GovernanceError(f"task {task_id} already exists")
    return GovTask.file(task_id=task_id, title=title, description=description, product_id=product_id, gates=gates,
                        assignee=assignee, actor=requester.principal, reason=reason, at=at)


async def assign_task(repo: Repository, requester: Requester, *, task_id: str, assignee: str,
                      expected_version: int | None, reason: str, at: str, roles_of: RolesOf) -> GovTask:
    """Raises: NotAuthorized (main only), NotFound, VersionConflict, GovernanceError."""
    require(requester, "assign governance tasks", MAIN)
    task = await load_task(repo, task_id)
    task.check_version(expected_version)
    _check_assignee(assignee, roles_of)
    task.assign(assignee=assignee, actor=requester.principal, reason=reason, at=at)
    return task


async def transition_task(repo: Repository, config: GovernanceConfig, requester: Requester, *, task_id: str, to: str,
                          expected_version: int | None, reason: str, evidence: list[str],
                          review_summary: str | None, at: str) -> GovTask:
    """Raises: NotFound, VersionConflict, NotAuthorized, IllegalTransition, MissingReviewSummary, GovernanceError."""
    task = await load_task(repo, task_id)
    task.check_version(expected_version)
    to = to.strip().upper()
    check_transition(task.id, task.state, to, task.resume_state)  # illegal for anyone: say so before who may
    authorize_move(requester, task, to, config)
    task.move(to=to, actor=requester.principal, reason=reason, evidence=evidence, review_summary=review_summary,
              strict=config.strict_mode, at=at)
    return task


async def approve_task(repo: Repository, config: GovernanceConfig, requester: Requester, *, task_id: str, gate: str,
                       expected_version: int | None, reason: str, evidence: list[str], at: str) -> GovTask:
    """Raises: NotFound, VersionConflict, NotAuthorized, SeparationOfPowers, DuplicateApproval, GovernanceError."""
    task = await load_task(repo, task_id)
    task.check_version(expected_version)
    authorize_approve(requester, gate, config)
    task.approve(gate=gate, approver=requester.principal, reason=reason, evidence=evidence, at=at)
    return task


async def save_product(repo: Repository, requester: Requester, *, product_id: str, name: str | None,
                       status: str | None, risk_level: str | None, at: str) -> Product:
    """Register a product, or update the given fields of an existing one. Raises: NotAuthorized (main only),
    GovernanceError (bad field, a new product without a name)."""
    require(requester, "manage products", MAIN)
    product = await repo.get(Product, product_id)
    if product is None:
        if name is None:
            raise GovernanceError(f"product {product_id!r} is new: give it a name")
        return Product.register(product_id=product_id, name=name, status=status or "active",
                                risk_level=risk_level or "medium", actor=requester.principal, at=at)
    product.update(name=name, status=status, risk_level=risk_level, actor=requester.principal, at=at)
    return product
