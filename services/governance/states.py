"""The governance-task state machine: which ``(from, to)`` moves exist (docs/governance.md has the diagram).

Forward path ``INBOX → TRIAGED → READY → DOING → REVIEW → APPROVAL → DONE``, two rework loops (``REVIEW → DOING``:
changes requested; ``APPROVAL → DOING``: an approver sends it back), and ``BLOCKED`` from every state except
``DONE`` (terminal) with a return only to the state it was blocked in. Who may make a move, and the extra
conditions (strict mode, gates), are checked elsewhere (:mod:`services.governance.policy`, the aggregate).
"""

from __future__ import annotations

from typing import get_args

from events.catalogue.governance import TaskState
from services.governance.errors import GovernanceError

STATES: tuple[str, ...] = get_args(TaskState)
INITIAL = "INBOX"
TERMINAL = "DONE"
BLOCKED = "BLOCKED"

_FORWARD: dict[str, frozenset[str]] = {
    "INBOX": frozenset({"TRIAGED"}),
    "TRIAGED": frozenset({"READY"}),
    "READY": frozenset({"DOING"}),
    "DOING": frozenset({"REVIEW"}),
    "REVIEW": frozenset({"APPROVAL", "DOING"}),
    "APPROVAL": frozenset({"DONE", "DOING"}),
    "DONE": frozenset(),
}


class IllegalTransition(GovernanceError):
    """The move does not exist from the task's current state (the message names the allowed ones)."""


def allowed_targets(state: str, resume_state: str | None = None) -> frozenset[str]:
    """The states a task in ``state`` may move to. ``resume_state``: for ``BLOCKED``, the state it came from
    (the only way out)."""
    if state == BLOCKED:
        return frozenset({resume_state}) if resume_state else frozenset()
    if state == TERMINAL:
        return frozenset()
    return _FORWARD[state] | {BLOCKED}


def check_transition(task_id: str, state: str, target: str, resume_state: str | None = None) -> None:
    """Raises:
        IllegalTransition: ``target`` is not a state, or not reachable from ``state`` (names current and allowed).
    """
    if target not in STATES:
        raise IllegalTransition(f"{target!r} is not a task state; states are {', '.join(STATES)}")
    allowed = allowed_targets(state, resume_state)
    if target not in allowed:
        options = ", ".join(s for s in STATES if s in allowed) or "none: DONE is final"
        raise IllegalTransition(f"task {task_id} is {state}: it cannot move to {target}; allowed from {state}: {options}")
