"""Who may do what: roles by group folder, and the authorisation of each governance command.

Roles come from ``governance.roles`` (folder → roles); the registered main group also holds ``main``. A person at
the CLI is the operator: every role. Built-in roles:

- ``main``: full control (products, assignment, any legal move);
- ``developer``: creates tasks; as a task's assignee moves it ``READY → DOING → REVIEW``, blocks and unblocks it;
- a gate's approver role (``security`` by default for the ``security`` gate): approves that gate, moves
  ``REVIEW → APPROVAL``, sends work back (``REVIEW/APPROVAL → DOING``), blocks and unblocks in review.

The aggregate still applies its own rules to everybody (state machine, separation of powers, strict mode).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.governance.config import GovernanceConfig
from services.governance.errors import NotAuthorized
from services.governance.task import GovTask, group_actor, person_actor

MAIN, DEVELOPER = "main", "developer"

_EXECUTOR_MOVES = {("READY", "DOING"), ("DOING", "REVIEW"), ("READY", "BLOCKED"), ("DOING", "BLOCKED")}
_APPROVER_MOVES = {("REVIEW", "APPROVAL"), ("REVIEW", "DOING"), ("APPROVAL", "DOING"), ("REVIEW", "BLOCKED"),
                   ("APPROVAL", "BLOCKED")}


@dataclass(frozen=True)
class Requester:
    """Who sends a command: ``principal`` (``group:<folder>`` / ``person:<name>``), the folder of a group, its
    roles, and whether it is the operator (a person at the CLI, holding every role)."""

    principal: str
    roles: frozenset[str]
    folder: str | None = None
    operator: bool = False

    @classmethod
    def group(cls, folder: str, roles: frozenset[str]) -> "Requester":
        return cls(group_actor(folder), roles, folder)

    @classmethod
    def person(cls, name: str) -> "Requester":
        return cls(person_actor(name), frozenset({MAIN}), None, operator=True)

    def has(self, role: str) -> bool:
        return self.operator or role in self.roles

    def describe(self) -> str:
        return f"{self.principal} (roles: {', '.join(sorted(self.roles)) or 'none'})"


def roles_of(folder: str, config: GovernanceConfig, *, is_main: bool) -> frozenset[str]:
    """The roles a group folder holds (configured, plus ``main`` for the registered main group)."""
    return frozenset(config.roles.get(folder, ())) | ({MAIN} if is_main else set())


def require(requester: Requester, action: str, *roles: str) -> None:
    """Raises: NotAuthorized unless the requester holds one of ``roles``."""
    if not any(requester.has(r) for r in roles):
        raise NotAuthorized(f"{requester.describe()} may not {action}: needs role {' or '.join(roles)}")


def require_any_role(requester: Requester) -> None:
    """Raises: NotAuthorized for a group holding no governance role at all."""
    if not requester.operator and not requester.roles:
        raise NotAuthorized(f"{requester.describe()} holds no governance role; roles are given in config.yml "
                            "(governance.roles)")


def authorize_move(requester: Requester, task: GovTask, to: str, config: GovernanceConfig) -> None:
    """Raises: NotAuthorized when the requester may not make this move on this task (see the module doc)."""
    if requester.has(MAIN):
        return
    frm = task.state
    resume = task.resume_state if frm == "BLOCKED" else None
    as_executor = requester.has(DEVELOPER) and task.assignee is not None and requester.folder == task.assignee
    if as_executor and ((frm, to) in _EXECUTOR_MOVES or (resume in ("READY", "DOING") and to == resume)):
        return
    approver_roles = {config.gates[g].role for g in task.gates if g in config.gates}
    as_approver = any(requester.has(r) for r in approver_roles)
    if as_approver and ((frm, to) in _APPROVER_MOVES or (resume in ("REVIEW", "APPROVAL") and to == resume)):
        return
    raise NotAuthorized(
        f"{requester.describe()} may not move task {task.id} {frm} → {to}: main may make any move; the assignee "
        f"({task.assignee or 'none'}, role developer) READY → DOING → REVIEW and block/unblock; an approver of "
        f"its gates ({', '.join(sorted(approver_roles)) or 'none'}) REVIEW → APPROVAL, send back to DOING, "
        "block/unblock in review")


def authorize_approve(requester: Requester, gate: str, config: GovernanceConfig) -> None:
    """Raises: NotAuthorized unless the requester holds the gate's approver role (``main`` is no substitute:
    gates exist to need someone else)."""
    gate_config = config.gates.get(gate)
    if gate_config is None:
        raise NotAuthorized(f"gate {gate!r} is not configured; gates: {', '.join(sorted(config.gates))}")
    if not requester.has(gate_config.role):
        raise NotAuthorized(f"{requester.describe()} may not approve gate {gate}: needs role {gate_config.role}")
