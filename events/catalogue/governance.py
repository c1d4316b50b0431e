"""Governance events (issue: governance kernel): products, governance tasks, their transitions, gate approvals
and dispatches. Rules live in ``services/governance`` and docs/governance.md; the events record what was decided.

Aggregates: ``governance.product/<product id>`` and ``governance.task/<task id>``. Every change names its
``actor`` (``group:<folder>`` for an agent of that group, ``person:<name>`` for the CLI, ``governance`` for the
dispatcher) and its time ``at``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.catalogue.base import EventPayload
from events.catalogue.types import UtcTimestamp

TaskState = Literal["INBOX", "TRIAGED", "READY", "DOING", "REVIEW", "APPROVAL", "DONE", "BLOCKED"]
ProductStatus = Literal["active", "paused", "retired"]
RiskLevel = Literal["low", "medium", "high", "critical"]
DispatchPurpose = Literal["execute", "approve"]

PRODUCT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
GATE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class _ProductEvent(EventPayload):
    context = "governance"
    aggregate = "product"


class GovProductRegistered(_ProductEvent):
    """A product entered the registry. Aggregate id: the product id."""

    product_id: str = Field(pattern=PRODUCT_ID_PATTERN)
    name: str = Field(min_length=1)
    status: ProductStatus = "active"
    risk_level: RiskLevel = "medium"
    actor: str
    at: UtcTimestamp


class GovProductUpdated(_ProductEvent):
    """Some fields of a product changed; absent fields are unchanged. Aggregate id: the product id."""

    product_id: str
    name: str | None = None
    status: ProductStatus | None = None
    risk_level: RiskLevel | None = None
    actor: str
    at: UtcTimestamp


class _TaskEvent(EventPayload):
    context = "governance"
    aggregate = "task"


class GovTaskCreated(_TaskEvent):
    """A governance task was filed; it starts in ``INBOX``. ``gates``: the approvals it needs before ``DONE``
    (empty: none). ``assignee``: the group folder that executes it. Aggregate id: the task id."""

    task_id: str = Field(pattern=TASK_ID_PATTERN)
    title: str = Field(min_length=1)
    description: str = ""
    product_id: str | None = None
    gates: list[str] = []
    assignee: str | None = None
    actor: str
    reason: str = ""
    at: UtcTimestamp


class GovTaskAssigned(_TaskEvent):
    """The group folder that executes the task changed. Aggregate id: the task id."""

    task_id: str
    assignee: str
    previous_assignee: str | None = None
    actor: str
    reason: str = ""
    at: UtcTimestamp


class GovTaskTransitioned(_TaskEvent):
    """The task moved from ``from_state`` to ``to_state``. ``evidence``: links, paths or notes backing the move;
    ``review_summary``: what was done (on ``DOING → REVIEW``; required in strict mode); ``resume_state``: on a
    move to ``BLOCKED``, the state an unblock returns to. Aggregate id: the task id."""

    task_id: str
    from_state: TaskState
    to_state: TaskState
    actor: str
    reason: str = ""
    evidence: list[str] = []
    review_summary: str | None = None
    resume_state: TaskState | None = None
    at: UtcTimestamp


class GovApprovalGranted(_TaskEvent):
    """``approver`` approved the task for ``gate`` (one approval per task and gate; never by an executor). When
    it is the last gate missing, the same commit moves the task ``APPROVAL → DONE``. Aggregate id: the task id."""

    task_id: str
    gate: str = Field(pattern=GATE_PATTERN)
    approver: str
    reason: str = ""
    evidence: list[str] = []
    at: UtcTimestamp


class GovTaskDispatched(_TaskEvent):
    """The dispatcher handed the task to a group: ``execute`` (``READY → DOING``, the assignee) or ``approve``
    (``REVIEW → APPROVAL``, the gate's approver group). ``dispatch_key`` is unique per dispatch and names the
    queue's task run (``TaskRunRequested`` on ``scheduler.task/gov:<dispatch_key>``), which follows in its own
    commit. Aggregate id: the task id."""

    task_id: str
    dispatch_key: str
    purpose: DispatchPurpose
    gate: str | None = None
    group_folder: str
    chat_jid: str
    is_main: bool = False
    prompt: str
    at: UtcTimestamp
