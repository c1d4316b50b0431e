"""The governance-task aggregate (``governance.task/<task id>``): state machine, gates, approvals, dispatches.

Rules enforced here, whoever sends the command (an agent over NATS, a person through the CLI, the dispatcher):

- moves follow :mod:`services.governance.states`; an illegal one names the current state and the allowed ones;
- optimistic locking: :meth:`GovTask.check_version` refuses a command whose expected version is stale (and the
  store refuses a save racing another one: ``ConcurrencyError``);
- strict mode: ``DOING → REVIEW`` needs a review summary;
- a task with gates reaches ``DONE`` only through approvals: one per gate, never by an executor (separation of
  powers); the last missing approval moves it ``APPROVAL → DONE`` in the same commit;
- a dispatch key is recorded once.

Actors are principals: ``group:<folder>``, ``person:<name>``, or ``governance`` (the dispatcher).
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import event

from events.aggregate import NcAggregate
from services.governance.errors import (DuplicateApproval, DuplicateDispatch, GovernanceError, MissingReviewSummary,
                                        SeparationOfPowers, VersionConflict)
from services.governance.states import BLOCKED, INITIAL, TERMINAL, check_transition

SYSTEM_ACTOR = "governance"
_EXECUTING_MOVES = {("READY", "DOING"), ("DOING", "REVIEW")}
"""Moves that make their actor (and the assignee at that time) an executor of the task."""


def group_actor(folder: str) -> str:
    return f"group:{folder}"


def person_actor(name: str) -> str:
    return f"person:{name}"


class GovTask(NcAggregate):
    CONTEXT, TYPE = "governance", "task"

    @staticmethod
    def create_id(task_id: str, **_: Any) -> str:
        return task_id

    @classmethod
    def file(cls, *, task_id: str, title: str, description: str, product_id: str | None, gates: list[str],
             assignee: str | None, actor: str, reason: str, at: str) -> "GovTask":
        """A new task in ``INBOX``. Raises: GovernanceError for an empty title or a repeated gate."""
        if not title.strip():
            raise GovernanceError("a task needs a non-empty title")
        if len(set(gates)) != len(gates):
            raise GovernanceError(f"gates must not repeat: {gates}")
        return cls(task_id=task_id, title=title.strip(), description=description, product_id=product_id,
                   gates=list(gates), assignee=assignee, actor=actor, reason=reason, at=at)

    @event("GovTaskCreated")
    def __init__(self, task_id: str, title: str, description: str, product_id: str | None, gates: list[str],
                 assignee: str | None, actor: str, reason: str, at: str):
        self.task_id, self.title, self.description, self.product_id = task_id, title, description, product_id
        self.gates: list[str] = list(gates)
        self.assignee = assignee
        self.created_by = actor
        self.state: str = INITIAL
        self.resume_state: str | None = None
        self.review_summary: str | None = None
        self.approvals: dict[str, str] = {}  # gate → approver
        self.executors: set[str] = set()  # who started it or submitted it for review, and assignees at that time
        self.dispatch_keys: set[str] = set()

    # -- reading ------------------------------------------------------------------------------------------

    @property
    def missing_gates(self) -> list[str]:
        return [g for g in self.gates if g not in self.approvals]

    def is_executor(self, principal: str) -> bool:
        """Whether ``principal`` executed the task (so may not approve it)."""
        current = {group_actor(self.assignee)} if self.assignee else set()
        return principal in self.executors | current

    def check_version(self, expected: int | None) -> None:
        """Raises: VersionConflict when ``expected`` is not the task's version; GovernanceError when missing."""
        if expected is None:
            raise GovernanceError(f"expected_version is required (task {self.id} is at version {self.version})")
        if expected != self.version:
            raise VersionConflict(f"conflict: task {self.id} is at version {self.version} (state {self.state}), "
                                  f"the command expected version {expected}; it changed meanwhile: reload and retry")

    # -- commands -----------------------------------------------------------------------------------------

    def assign(self, *, assignee: str, actor: str, reason: str, at: str) -> None:
        """Raises: GovernanceError when the task is DONE or already assigned to ``assignee``."""
        if self.state == TERMINAL:
            raise GovernanceError(f"task {self.id} is DONE: it cannot be reassigned")
        if assignee == self.assignee:
            raise GovernanceError(f"task {self.id} is already assigned to {assignee}")
        self._assigned(task_id=self.id, assignee=assignee, previous_assignee=self.assignee, actor=actor,
                       reason=reason, at=at)

    @event("GovTaskAssigned")
    def _assigned(self, task_id: str, assignee: str, previous_assignee: str | None, actor: str, reason: str,
                  at: str) -> None:
        self.assignee = assignee

    def move(self, *, to: str, actor: str, reason: str, evidence: list[str], review_summary: str | None,
             strict: bool, at: str) -> None:
        """Raises:
            IllegalTransition: no such move from the current state.
            MissingReviewSummary: strict mode and ``DOING → REVIEW`` without a summary.
            GovernanceError: ``APPROVAL → DONE`` while gates still need approval (use :meth:`approve`).
        """
        check_transition(self.id, self.state, to, self.resume_state)
        summary = review_summary.strip() if review_summary and to == "REVIEW" else None  # only a review has one
        if to == "REVIEW" and self.state == "DOING" and strict and not summary:
            raise MissingReviewSummary(f"strict mode: moving task {self.id} DOING → REVIEW needs a review summary "
                                       "(what was done and how it was checked)")
        if to == TERMINAL and self.missing_gates:
            raise GovernanceError(f"task {self.id} needs the approval of gate(s) {', '.join(self.missing_gates)} "
                                  "before DONE: approve them (gov_approve) instead")
        self._transitioned(task_id=self.id, from_state=self.state, to_state=to, actor=actor, reason=reason,
                           evidence=list(evidence), review_summary=summary,
                           resume_state=self.state if to == BLOCKED else None, at=at)

    @event("GovTaskTransitioned")
    def _transitioned(self, task_id: str, from_state: str, to_state: str, actor: str, reason: str,
                      evidence: list[str], review_summary: str | None, resume_state: str | None, at: str) -> None:
        if (from_state, to_state) in _EXECUTING_MOVES:  # not a send-back to DOING: that is a reviewer's call
            if actor != SYSTEM_ACTOR:
                self.executors.add(actor)
            if self.assignee:
                self.executors.add(group_actor(self.assignee))
        if review_summary is not None:
            self.review_summary = review_summary
        self.resume_state = resume_state if to_state == BLOCKED else None
        self.state = to_state

    def approve(self, *, gate: str, approver: str, reason: str, evidence: list[str], at: str) -> None:
        """Record ``approver``'s approval of ``gate``; the last missing one also moves ``APPROVAL → DONE``.

        Raises:
            GovernanceError: the task is not in APPROVAL, or ``gate`` is not one of its gates.
            DuplicateApproval: the gate is already approved.
            SeparationOfPowers: ``approver`` executed the task.
        """
        if gate not in self.gates:
            raise GovernanceError(f"task {self.id} has no gate {gate!r}; its gates: {', '.join(self.gates) or 'none'}")
        if gate in self.approvals:
            raise DuplicateApproval(f"gate {gate} of task {self.id} is already approved (by {self.approvals[gate]}); "
                                    "one approval per task and gate")
        if self.state != "APPROVAL":
            raise GovernanceError(f"task {self.id} is {self.state}: approvals are given in APPROVAL only")
        if self.is_executor(approver):
            raise SeparationOfPowers(f"{approver} executed task {self.id} and may not approve it "
                                     "(separation of powers: approver ≠ executor)")
        self._approved(task_id=self.id, gate=gate, approver=approver, reason=reason, evidence=list(evidence), at=at)
        if not self.missing_gates:
            self._transitioned(task_id=self.id, from_state="APPROVAL", to_state=TERMINAL, actor=approver,
                               reason="every gate approved", evidence=[], review_summary=None, resume_state=None, at=at)

    @event("GovApprovalGranted")
    def _approved(self, task_id: str, gate: str, approver: str, reason: str, evidence: list[str], at: str) -> None:
        self.approvals[gate] = approver

    def dispatch(self, *, dispatch_key: str, purpose: str, gate: str | None, group_folder: str, chat_jid: str,
                 is_main: bool, prompt: str, at: str) -> None:
        """Raises: DuplicateDispatch when ``dispatch_key`` is already recorded."""
        if dispatch_key in self.dispatch_keys:
            raise DuplicateDispatch(f"task {self.id} was already dispatched with key {dispatch_key}")
        self._dispatched(task_id=self.id, dispatch_key=dispatch_key, purpose=purpose, gate=gate,
                         group_folder=group_folder, chat_jid=chat_jid, is_main=is_main, prompt=prompt, at=at)

    @event("GovTaskDispatched")
    def _dispatched(self, task_id: str, dispatch_key: str, purpose: str, gate: str | None, group_folder: str,
                    chat_jid: str, is_main: bool, prompt: str, at: str) -> None:
        self.dispatch_keys.add(dispatch_key)
