"""Rules of the governance-task aggregate beyond the move table: optimistic locking (the expected version, and
JetStream's per-aggregate check on a real nats-server), gates and approvals, separation of powers, strict mode,
dispatch keys, and the products registry."""

from __future__ import annotations

import pytest

from events.aggregate import pending_payloads
from events.errors import ConcurrencyError
from events.repository import Repository
from services.governance.config import GovernanceConfig
from services.governance.errors import (DuplicateApproval, DuplicateDispatch, GovernanceError, MissingReviewSummary,
                                        SeparationOfPowers, VersionConflict)
from services.governance.product import Product
from services.governance.task import GovTask
from tests.governance.test_state_machine import AT, step, task_in


def approve(task: GovTask, gate: str, approver: str = "group:sec-team") -> None:
    task.approve(gate=gate, approver=approver, reason="looks safe", evidence=["scan.txt"], at=AT)


# -- optimistic locking --------------------------------------------------------------------------------------


def test_a_command_with_a_stale_expected_version_is_refused_naming_both_versions():
    task = task_in("READY")
    with pytest.raises(VersionConflict, match=r"task gt-1 is at version 3 \(state READY\), the command expected "
                                               r"version 2; it changed meanwhile: reload and retry"):
        task.check_version(2)
    task.check_version(3)


def test_a_command_without_an_expected_version_is_refused():
    with pytest.raises(GovernanceError, match="expected_version is required"):
        task_in("INBOX").check_version(None)


async def test_two_saves_based_on_the_same_version_race_and_jetstream_refuses_the_second(js_store):
    repo = Repository(js_store, "test")
    task = GovTask.file(task_id="gt-race", title="Race", description="", product_id=None, gates=[], assignee=None,
                        actor="person:owner", reason="", at=AT)
    await repo.save(task)
    first = await Repository(js_store, "a").get(GovTask, "gt-race")
    second = await Repository(js_store, "b").get(GovTask, "gt-race")
    step(first, "TRIAGED")
    step(second, "BLOCKED")
    await Repository(js_store, "a").save(first)
    with pytest.raises(ConcurrencyError, match="reload and retry"):
        await Repository(js_store, "b").save(second)
    stored = await Repository(js_store, "c").get(GovTask, "gt-race")
    assert stored.state == "TRIAGED" and stored.version == 2


# -- gates, approvals, separation of powers -------------------------------------------------------------------


def test_with_gates_approval_to_done_happens_only_through_approvals():
    task = task_in("APPROVAL", gates=["security", "claims"])
    with pytest.raises(GovernanceError, match="needs the approval of gate\\(s\\) security, claims before DONE"):
        step(task, "DONE")


def test_the_last_missing_approval_moves_the_task_to_done_in_the_same_commit():
    task = task_in("APPROVAL", gates=["security", "claims"])
    approve(task, "security")
    [only] = pending_payloads(task)
    assert type(only).__name__ == "GovApprovalGranted" and task.state == "APPROVAL"
    approve(task, "claims", approver="group:claims-team")
    granted, done = pending_payloads(task)
    assert (type(granted).__name__, granted.gate, granted.approver) == ("GovApprovalGranted", "claims",
                                                                        "group:claims-team")
    assert (done.from_state, done.to_state, done.actor) == ("APPROVAL", "DONE", "group:claims-team")
    assert task.state == "DONE"


def test_a_second_approval_of_the_same_gate_is_refused():
    task = task_in("APPROVAL", gates=["security", "claims"])
    approve(task, "security")
    with pytest.raises(DuplicateApproval, match="gate security of task gt-1 is already approved \\(by group:sec-team\\)"):
        approve(task, "security", approver="group:other-sec")


def test_an_approval_after_done_is_refused_as_a_duplicate():
    task = task_in("APPROVAL", gates=["security"])
    approve(task, "security")
    with pytest.raises(DuplicateApproval):
        approve(task, "security", approver="group:other-sec")


def test_the_assignee_group_may_not_approve_its_own_work():
    task = task_in("APPROVAL", gates=["security"])
    with pytest.raises(SeparationOfPowers, match="group:dev-team executed task gt-1 and may not approve it"):
        approve(task, "security", approver="group:dev-team")
    assert pending_payloads(task) == []


def test_whoever_moved_the_task_into_doing_or_review_may_not_approve_it():
    task = task_in("READY", gates=["security"])
    step(task, "DOING", actor="person:alice")
    step(task, "REVIEW", actor="person:bob")
    step(task, "APPROVAL", actor="person:carol")
    for executor in ("person:alice", "person:bob"):
        with pytest.raises(SeparationOfPowers):
            approve(task, "security", approver=executor)
    approve(task, "security", approver="person:carol")  # carol only forwarded it to approval
    assert task.state == "DONE"


@pytest.mark.parametrize("sent_back_from", ["REVIEW", "APPROVAL"])
def test_an_approver_who_sent_the_work_back_is_no_executor_and_may_approve_the_rework(sent_back_from):
    task = task_in(sent_back_from, gates=["security"])
    step(task, "DOING", actor="group:sec-team")  # changes requested: not doing the work
    step(task, "REVIEW", actor="group:dev-team")
    step(task, "APPROVAL", actor="group:sec-team")
    approve(task, "security", approver="group:sec-team")
    assert task.state == "DONE"


def test_an_approval_outside_approval_state_or_for_another_gate_is_refused():
    with pytest.raises(GovernanceError, match="task gt-1 is REVIEW: approvals are given in APPROVAL only"):
        approve(task_in("REVIEW", gates=["security"]), "security")
    with pytest.raises(GovernanceError, match="task gt-1 has no gate 'revops'; its gates: security"):
        approve(task_in("APPROVAL", gates=["security"]), "revops")


# -- strict mode -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("summary", [None, "", "   "])
def test_strict_mode_refuses_review_without_a_review_summary(summary):
    task = task_in("DOING")
    with pytest.raises(MissingReviewSummary, match="strict mode: moving task gt-1 DOING → REVIEW needs a review summary"):
        step(task, "REVIEW", summary=summary, strict=True)
    assert task.state == "DOING"


def test_strict_mode_accepts_review_with_a_summary_and_records_it():
    task = task_in("DOING")
    step(task, "REVIEW", summary="  added tests; CI green  ", strict=True)
    [event] = pending_payloads(task)
    assert event.review_summary == "added tests; CI green" and task.review_summary == "added tests; CI green"


def test_without_strict_mode_review_needs_no_summary():
    task = task_in("DOING")
    step(task, "REVIEW", summary=None, strict=False)
    assert task.state == "REVIEW"


def test_strict_mode_is_off_unless_configured():
    assert GovernanceConfig().strict_mode is False
    assert GovernanceConfig.model_validate({"strict_mode": True}).strict_mode is True


# -- dispatch keys, configuration, products ---------------------------------------------------------------------


def test_a_dispatch_key_is_recorded_once():
    task = task_in("DOING")
    kw = dict(purpose="execute", gate=None, group_folder="dev-team", chat_jid="dev@g.us", is_main=False,
              prompt="do it", at=AT)
    task.dispatch(dispatch_key="gt-1.execute.work.v3", **kw)
    with pytest.raises(DuplicateDispatch):
        task.dispatch(dispatch_key="gt-1.execute.work.v3", **kw)


@pytest.mark.parametrize(("section", "problem"), [
    ({"gates": {"none": {"role": "x"}}}, "reserved"),
    ({"gates": {"Security!": {"role": "security"}}}, "must match"),
    ({"roles": {"dev": ["Developer"]}}, "role 'Developer' of folder 'dev'"),
    ({"strict": True}, "strict"),
])
def test_an_invalid_governance_section_is_refused_naming_the_problem(section, problem):
    with pytest.raises(ValueError, match=problem):
        GovernanceConfig.model_validate(section)


def test_products_validate_their_fields_and_update_only_what_is_given():
    with pytest.raises(GovernanceError, match="risk level 'extreme' is not one of low, medium, high, critical"):
        Product.register(product_id="shop", name="Shop", status="active", risk_level="extreme", actor="p", at=AT)
    with pytest.raises(GovernanceError, match="product id 'Shop!'"):
        Product.register(product_id="Shop!", name="Shop", status="active", risk_level="low", actor="p", at=AT)
    product = Product.register(product_id="shop", name="Shop", status="active", risk_level="low", actor="p", at=AT)
    product.update(name=None, status="paused", risk_level=None, actor="p", at=AT)
    assert (product.name, product.status, product.risk_level) == ("Shop", "paused", "low")
    with pytest.raises(GovernanceError, match="nothing to update"):
        product.update(name=None, status=None, risk_level=None, actor="p", at=AT)
