"""The governance-task state machine, move by move: every (from, to) pair of the eight states, legal or not.

The expected table is written out here, not derived from the code under test. A task without gates is used so
that APPROVAL → DONE is a plain move (gates are covered in test_task_rules.py).
"""

from __future__ import annotations

import pytest

from events.aggregate import pending_payloads
from services.governance.states import IllegalTransition
from services.governance.task import GovTask

AT = "2026-03-01T10:00:00.000Z"
STATES = ["INBOX", "TRIAGED", "READY", "DOING", "REVIEW", "APPROVAL", "DONE", "BLOCKED"]
BLOCK_FROM = ["INBOX", "TRIAGED", "READY", "DOING", "REVIEW", "APPROVAL"]

LEGAL = {
    ("INBOX", "TRIAGED"), ("TRIAGED", "READY"), ("READY", "DOING"), ("DOING", "REVIEW"),
    ("REVIEW", "APPROVAL"), ("REVIEW", "DOING"),
    ("APPROVAL", "DONE"), ("APPROVAL", "DOING"),
    *((s, "BLOCKED") for s in BLOCK_FROM),
    ("BLOCKED", "DOING"),  # the BLOCKED row's task was blocked while DOING: it can only go back there
}
PATH = {"INBOX": [], "TRIAGED": ["TRIAGED"], "READY": ["TRIAGED", "READY"], "DOING": ["TRIAGED", "READY", "DOING"],
        "REVIEW": ["TRIAGED", "READY", "DOING", "REVIEW"],
        "APPROVAL": ["TRIAGED", "READY", "DOING", "REVIEW", "APPROVAL"],
        "DONE": ["TRIAGED", "READY", "DOING", "REVIEW", "APPROVAL", "DONE"],
        "BLOCKED": ["TRIAGED", "READY", "DOING", "BLOCKED"]}


def new_task(gates: list[str] | None = None) -> GovTask:
    return GovTask.file(task_id="gt-1", title="Ship it", description="", product_id=None, gates=gates or [],
                        assignee="dev-team", actor="person:owner", reason="", at=AT)


def step(task: GovTask, to: str, *, actor: str = "person:owner", summary: str | None = "done and checked",
         strict: bool = False) -> None:
    task.move(to=to, actor=actor, reason=f"to {to}", evidence=[], review_summary=summary, strict=strict, at=AT)


def task_in(state: str, gates: list[str] | None = None) -> GovTask:
    task = new_task(gates)
    for to in PATH[state]:
        step(task, to)
    pending_payloads(task)  # start the move under test with nothing pending
    return task


def test_the_table_covers_every_pair_of_the_eight_states():
    assert len(STATES) == 8 and len(LEGAL) == 15


@pytest.mark.parametrize(("frm", "to"), sorted((f, t) for f in STATES for t in STATES if (f, t) in LEGAL))
def test_a_legal_move_is_one_transition_event_with_actor_reason_and_evidence(frm, to):
    task = task_in(frm)
    version = task.version
    task.move(to=to, actor="group:dev-team", reason="because", evidence=["https://ci/1"], review_summary="summary",
              strict=False, at=AT)
    [event] = pending_payloads(task)
    assert type(event).__name__ == "GovTaskTransitioned"
    assert (event.from_state, event.to_state, event.actor, event.reason, event.evidence) == (
        frm, to, "group:dev-team", "because", ["https://ci/1"])
    assert task.state == to and task.version == version + 1


@pytest.mark.parametrize(("frm", "to"), sorted((f, t) for f in STATES for t in STATES if (f, t) not in LEGAL))
def test_an_illegal_move_is_refused_naming_the_current_state_and_the_allowed_ones(frm, to):
    task = task_in(frm)
    with pytest.raises(IllegalTransition) as refused:
        step(task, to)
    message = str(refused.value)
    assert f"is {frm}" in message and f"cannot move to {to}" in message
    allowed = sorted(t for f, t in LEGAL if f == frm)
    assert all(a in message.split("allowed from")[1] for a in allowed)
    if not allowed:
        assert "DONE is final" in message
    assert task.state == frm and pending_payloads(task) == []


@pytest.mark.parametrize("blocked_in", BLOCK_FROM)
def test_a_blocked_task_remembers_its_state_and_can_only_return_to_it(blocked_in):
    task = task_in(blocked_in)
    step(task, "BLOCKED")
    [event] = pending_payloads(task)
    assert event.resume_state == blocked_in and task.resume_state == blocked_in
    for other in STATES:
        if other != blocked_in:
            with pytest.raises(IllegalTransition, match=f"allowed from BLOCKED: {blocked_in}$"):
                step(task, other)
    step(task, blocked_in)
    assert task.state == blocked_in and task.resume_state is None


def test_an_unknown_state_is_refused_naming_the_states():
    task = task_in("READY")
    with pytest.raises(IllegalTransition, match="'FINISHED' is not a task state; states are INBOX, TRIAGED"):
        step(task, "FINISHED")
