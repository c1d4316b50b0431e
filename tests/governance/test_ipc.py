"""The agents' governance tools through real NATS requests to the real service: identity from the subject's
folder token, authorisation by role, conflicts, separation of powers, duplicates and strict mode as the agent
sees them. The dispatch loop is off here (``auto_dispatch: false``) so each test drives every move itself;
test_dispatch.py covers the loop."""

from __future__ import annotations

import asyncio

from tests.bus import events_of
from tests.governance.helpers import (DEV, DEVSEC, MAIN, NOBODY, SEC, ask, events_of_task, governance, move, ok,
                                      refused, register_groups)

MANUAL = {"auto_dispatch": False}


async def create(nc, folder=MAIN, **fields) -> dict:
    return ok(await ask(nc, folder, "gov_create_task", {"title": "Add login rate limit", **fields}))


async def to_review(nc, task: dict, executor: str) -> dict:
    for to, who in (("TRIAGED", MAIN), ("READY", MAIN), ("DOING", executor)):
        task = await move(nc, who, task, to)
    return await move(nc, executor, task, "REVIEW", review_summary="limit added, tests pass", evidence=["pr/12"])


# -- identity and roles -------------------------------------------------------------------------------------------


async def test_an_unregistered_folder_or_a_group_without_a_role_is_refused(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        assert refused(await ask(nc, "ghost", "gov_list"), "no registered group has folder 'ghost'")
        assert refused(await ask(nc, NOBODY, "gov_list"), "group:no-role (roles: none) holds no governance role")
    # Only the missing role is a security refusal (an audit record); an unknown folder is an error answer.
    [refusal] = await events_of(js_store, "SandboxRequestRefused")
    assert (refusal.service, refusal.group_folder, refusal.operation) == ("governance", NOBODY, "gov_list")


async def test_identity_is_the_subject_folder_never_the_payload(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        reply = await ask(nc, DEV, "gov_product_save", {"product_id": "shop", "name": "Shop", "folder": MAIN,
                                                        "actor": "group:whatsapp_main"})
        assert refused(reply, "group:dev-team (roles: developer) may not manage products: needs role main")


async def test_only_main_manages_products_and_every_role_can_read_them(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        saved = ok(await ask(nc, MAIN, "gov_product_save", {"product_id": "shop", "name": "Shop", "risk_level": "high"}))
        assert saved == {"product_id": "shop", "name": "Shop", "status": "active", "risk_level": "high", "version": 1}
        ok(await ask(nc, MAIN, "gov_product_save", {"product_id": "shop", "status": "paused"}))
        [product] = ok(await ask(nc, SEC, "gov_products"))["products"]
        assert (product["product_id"], product["status"], product["risk_level"], product["created_by"]) == (
            "shop", "paused", "high", "group:whatsapp_main")
        assert refused(await ask(nc, MAIN, "gov_product_save", {"product_id": "new"}), "is new: give it a name")


async def test_developers_create_tasks_but_only_main_assigns_and_security_creates_none(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        task = await create(nc, DEV, gates=["security"])
        assert (task["state"], task["version"], task["gates"], task["assignee"]) == ("INBOX", 1, ["security"], None)
        assert refused(await ask(nc, DEV, "gov_create_task", {"title": "x", "assignee": DEV}), "only main assigns")
        assert refused(await ask(nc, SEC, "gov_create_task", {"title": "x"}),
                       "may not create governance tasks: needs role main or developer")
        assert refused(await ask(nc, DEV, "gov_assign", {"task_id": task["task_id"], "assignee": DEV,
                                                         "expected_version": 1}), "needs role main")
        assert refused(await ask(nc, MAIN, "gov_assign", {"task_id": task["task_id"], "assignee": SEC,
                                                          "expected_version": 1}),
                       "cannot assign to 'sec-team': only a folder holding the developer (or main) role")
        assigned = ok(await ask(nc, MAIN, "gov_assign", {"task_id": task["task_id"], "assignee": DEV,
                                                         "expected_version": 1, "reason": "owns auth"}))
        assert (assigned["assignee"], assigned["version"]) == (DEV, 2)


async def test_bad_input_is_refused_naming_the_field(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        assert refused(await ask(nc, MAIN, "gov_create_task", {"title": ""}), "'title' must be a non-empty string")
        assert refused(await ask(nc, MAIN, "gov_create_task", {"title": "x", "gates": ["speed"]}),
                       "unknown gate(s) speed; gates: claims, product, revops, security, none")
        assert refused(await ask(nc, MAIN, "gov_create_task", {"title": "x", "product_id": "nope"}), "no product 'nope'")
        task = await create(nc)
        assert refused(await ask(nc, MAIN, "gov_transition", {"task_id": task["task_id"], "to": "TRIAGED"}),
                       "'expected_version' must be the task's current version")
        assert refused(await ask(nc, MAIN, "gov_transition", {"task_id": "gt-none", "to": "TRIAGED",
                                                              "expected_version": 1}), "no governance task 'gt-none'")
        assert refused(await ask(nc, MAIN, "gov_transition", {"task_id": task["task_id"], "to": "DONE",
                                                              "expected_version": 1}),
                       f"task {task['task_id']} is INBOX: it cannot move to DONE; allowed from INBOX: TRIAGED, BLOCKED")


async def test_a_developer_moves_only_the_tasks_assigned_to_it_and_only_its_own_steps(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        task = await create(nc, assignee=DEV)
        assert refused(await ask(nc, DEV, "gov_transition", {"task_id": task["task_id"], "to": "TRIAGED",
                                                             "expected_version": 1}),
                       "group:dev-team (roles: developer) may not move task", "INBOX → TRIAGED")
        task = await move(nc, MAIN, task, "TRIAGED")
        task = await move(nc, MAIN, task, "READY")
        assert refused(await ask(nc, DEVSEC, "gov_transition", {"task_id": task["task_id"], "to": "DOING",
                                                                "expected_version": task["version"]}), "may not move")
        task = await move(nc, DEV, task, "DOING")
        task = await move(nc, DEV, task, "BLOCKED", reason="waiting for API key")
        task = await move(nc, DEV, task, "DOING", reason="key arrived")
        task = await move(nc, DEV, task, "REVIEW")
        assert refused(await ask(nc, DEV, "gov_transition", {"task_id": task["task_id"], "to": "APPROVAL",
                                                             "expected_version": task["version"]}), "may not move")


async def test_an_illegal_move_names_the_current_and_allowed_states_whoever_asks(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        task = await create(nc, assignee=DEV)
        for to in ("TRIAGED", "READY"):
            task = await move(nc, MAIN, task, to)
        task = await move(nc, DEV, task, "DOING")
        for who in (DEV, SEC, MAIN):
            reply = await ask(nc, who, "gov_transition", {"task_id": task["task_id"], "to": "DONE",
                                                          "expected_version": task["version"]})
            assert refused(reply, f"task {task['task_id']} is DOING: it cannot move to DONE; allowed from DOING: "
                                  "REVIEW, BLOCKED"), (who, reply)


# -- approvals ---------------------------------------------------------------------------------------------------


async def test_the_security_group_approves_the_security_gate_and_the_task_is_done(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        task = await to_review(nc, await create(nc, assignee=DEV, gates=["security"]), DEV)
        task = await move(nc, SEC, task, "APPROVAL")
        assert refused(await ask(nc, MAIN, "gov_approve", {"task_id": task["task_id"], "gate": "security",
                                                           "expected_version": task["version"]}),
                       "may not approve gate security: needs role security")
        done = ok(await ask(nc, SEC, "gov_approve", {"task_id": task["task_id"], "gate": "security",
                                                     "expected_version": task["version"], "reason": "no secrets",
                                                     "evidence": ["scan/3"]}))
        assert (done["state"], done["approved"], done["version"]) == ("DONE", ["security"], task["version"] + 2)
        history = ok(await ask(nc, DEV, "gov_get", {"task_id": task["task_id"]}))
        assert history["approvals"][0]["approver"] == "group:sec-team"
        assert [a["kind"] for a in history["activities"]][-2:] == ["approval", "transition"]


async def test_an_executor_holding_the_approver_role_may_not_approve_its_own_task(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        task = await to_review(nc, await create(nc, assignee=DEVSEC, gates=["security"]), DEVSEC)
        task = await move(nc, SEC, task, "APPROVAL")
        reply = await ask(nc, DEVSEC, "gov_approve", {"task_id": task["task_id"], "gate": "security",
                                                      "expected_version": task["version"]})
        assert refused(reply, "group:dev-sec executed task", "separation of powers: approver ≠ executor")
        assert [t for t, _ in await events_of_task(js_store, task["task_id"])].count("GovApprovalGranted") == 0


async def test_a_duplicate_approval_is_refused_and_stores_nothing(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, roles={DEV: ["developer"], SEC: ["security"],
                                                         DEVSEC: ["security", "claims"]}, **MANUAL):
        task = await to_review(nc, await create(nc, assignee=DEV, gates=["security", "claims"]), DEV)
        task = await move(nc, SEC, task, "APPROVAL")
        first = ok(await ask(nc, SEC, "gov_approve", {"task_id": task["task_id"], "gate": "security",
                                                      "expected_version": task["version"]}))
        again = await ask(nc, DEVSEC, "gov_approve", {"task_id": task["task_id"], "gate": "security",
                                                      "expected_version": first["version"]})
        assert refused(again, f"gate security of task {task['task_id']} is already approved (by group:sec-team)")
        approvals = [d for t, d in await events_of_task(js_store, task["task_id"]) if t == "GovApprovalGranted"]
        assert len(approvals) == 1 and first["state"] == "APPROVAL"


# -- strict mode -----------------------------------------------------------------------------------------------


async def test_in_strict_mode_an_agent_must_give_a_review_summary(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, strict_mode=True, **MANUAL):
        task = await create(nc, assignee=DEV)
        for to, who in (("TRIAGED", MAIN), ("READY", MAIN), ("DOING", DEV)):
            task = await move(nc, who, task, to)
        bare = await ask(nc, DEV, "gov_transition", {"task_id": task["task_id"], "to": "REVIEW",
                                                     "expected_version": task["version"]})
        assert refused(bare, "strict mode", "needs a review summary")
        reviewed = await move(nc, DEV, task, "REVIEW", review_summary="rate limit 5/min, tests added")
        assert reviewed["state"] == "REVIEW"
        shown = ok(await ask(nc, MAIN, "gov_get", {"task_id": task["task_id"]}))
        assert shown["review_summary"] == "rate limit 5/min, tests added"


# -- optimistic locking ----------------------------------------------------------------------------------------


async def test_two_concurrent_moves_with_the_same_expected_version_one_wins_the_other_gets_a_conflict(
        nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        task = await create(nc)
        body = {"task_id": task["task_id"], "expected_version": task["version"]}
        replies = await asyncio.gather(ask(nc, MAIN, "gov_transition", {**body, "to": "TRIAGED"}),
                                       ask(nc, MAIN, "gov_transition", {**body, "to": "BLOCKED"}))
        winners = [r for r in replies if r["ok"]]
        losers = [r for r in replies if not r["ok"]]
        assert len(winners) == 1 and len(losers) == 1, replies
        assert "reload and retry" in losers[0]["error"] and task["task_id"] in losers[0]["error"]
        moves = [d for t, d in await events_of_task(js_store, task["task_id"]) if t == "GovTaskTransitioned"]
        assert len(moves) == 1 and moves[0]["to_state"] == winners[0]["result"]["state"]


async def test_a_stale_expected_version_is_a_clear_conflict(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        task = await create(nc)
        await move(nc, MAIN, task, "TRIAGED")
        stale = await ask(nc, MAIN, "gov_transition", {"task_id": task["task_id"], "to": "BLOCKED",
                                                       "expected_version": task["version"]})
        assert refused(stale, f"conflict: task {task['task_id']} is at version 2 (state TRIAGED), the command "
                              "expected version 1")


async def test_a_retried_create_with_the_same_request_id_files_one_task(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        first = ok(await ask(nc, DEV, "gov_create_task", {"title": "once"}, request_id="req-1"))
        again = ok(await ask(nc, DEV, "gov_create_task", {"title": "once"}, request_id="req-1"))
        assert first == again
        listed = ok(await ask(nc, MAIN, "gov_list", {}))["tasks"]
        assert [t["task_id"] for t in listed] == [first["task_id"]]


async def test_gov_list_filters_by_state_and_mine_means_assigned_to_the_requesting_group(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **MANUAL):
        mine = await create(nc, title="mine", assignee=DEV)
        other = await create(nc, title="other")
        await move(nc, MAIN, other, "TRIAGED")
        listed = ok(await ask(nc, DEV, "gov_list", {"mine": True}))
        assert [t["task_id"] for t in listed["tasks"]] == [mine["task_id"]] and listed["your_roles"] == ["developer"]
        triaged = ok(await ask(nc, SEC, "gov_list", {"state": "triaged"}))["tasks"]
        assert [(t["task_id"], t["state"], t["version"]) for t in triaged] == [(other["task_id"], "TRIAGED", 2)]
        assert refused(await ask(nc, DEV, "gov_list", {"mine": "yes"}), "'mine' must be true or false")
