"""The capability rules of the external-access broker: levels × deny × expiry × product scope × the two-man
rule, decided at a given time; GitHub operations classified by level; the aggregate rebuilt from a real
nats-server decides the same."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events.repository import Repository
from services.broker.ext.capability import CapabilityError, ExtCapability, decide
from services.broker.ext.providers import github_level
from tests.clock import T0

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def cap(*steps) -> ExtCapability:
    """A capability of ``family`` on ``github`` after ``steps``: ("grant", level, product, approvers, at),
    ("approve", grant_id, approver, at), ("revoke", grant_id, at), ("deny", product, at), ("lift", product, at).
    Grants get ids g1, g2, … in order."""
    c = ExtCapability.open("family", "github")
    n = 0
    for step in steps:
        kind, *args = step
        if kind == "grant":
            n += 1
            level, product, approvers, at = args
            c.grant(grant_id=f"g{n}", level=level, product=product, approvers=list(approvers), reason="", now=at)
        elif kind == "approve":
            c.approve(grant_id=args[0], approver=args[1], now=args[2])
        elif kind == "revoke":
            c.revoke(grant_id=args[0], by="owner", reason="", now=args[1])
        elif kind == "deny":
            c.deny(product=args[0], by="owner", reason="incident", now=args[1])
        elif kind == "lift":
            c.lift_deny(product=args[0], by="owner", reason="", now=args[1])
    return c


L1 = ("grant", 1, None, ["alice"], T0)
L2 = ("grant", 2, None, ["alice"], T0)
L3_PROPOSED = ("grant", 3, None, ["alice"], T0)
L3_BOTH = ("grant", 3, None, ["alice", "bob"], T0)

MATRIX = [
    # (id, steps, call: (required level, product, time), decision, level held)
    ("nothing granted is level 0", [], (1, None, T0), "insufficient", 0),
    ("L1 allows reads", [L1], (1, None, T0), "allowed", 1),
    ("L1 does not allow writes", [L1], (2, None, T0), "insufficient", 1),
    ("L1 never expires", [L1], (1, None, T0 + 365 * DAY), "allowed", 1),
    ("L2 allows reads", [L2], (1, None, T0), "allowed", 2),
    ("L2 allows writes", [L2], (2, None, T0), "allowed", 2),
    ("L2 does not allow deploy or merge", [L2], (3, None, T0), "insufficient", 2),
    ("L2 still holds a second before 7 days", [L2], (2, None, T0 + 7 * DAY - SECOND), "allowed", 2),
    ("L2 expires after 7 days", [L2], (2, None, T0 + 7 * DAY), "expired", 0),
    ("an expired L2 no longer allows reads", [L2], (1, None, T0 + 8 * DAY), "expired", 0),
    ("an expired L2 leaves an L1 in force", [L1, L2], (2, None, T0 + 8 * DAY), "expired", 1),
    ("reads still pass on the L1 once L2 has expired", [L1, L2], (1, None, T0 + 8 * DAY), "allowed", 1),
    ("L3 with one approver is only proposed", [L3_PROPOSED], (3, None, T0), "insufficient", 0),
    ("a proposed L3 does not even allow reads", [L3_PROPOSED], (1, None, T0), "insufficient", 0),
    ("L3 with two approvers allows merge", [L3_BOTH], (3, None, T0), "allowed", 3),
    ("L3 allows writes and reads", [L3_BOTH], (1, None, T0), "allowed", 3),
    ("L3 approved later", [L3_PROPOSED, ("approve", "g1", "bob", T0 + DAY)], (3, None, T0 + DAY), "allowed", 3),
    ("L3 lasts 7 days from its second approval",
     [L3_PROPOSED, ("approve", "g1", "bob", T0 + 3 * DAY)], (3, None, T0 + 9 * DAY), "allowed", 3),
    ("L3 expires 7 days after its second approval",
     [L3_PROPOSED, ("approve", "g1", "bob", T0 + 3 * DAY)], (3, None, T0 + 10 * DAY), "expired", 0),
    ("a deny wins over L3", [L3_BOTH, ("deny", None, T0)], (1, None, T0), "denied", 0),
    ("a deny wins over L1", [L1, ("deny", None, T0)], (1, "shop", T0), "denied", 0),
    ("a lifted deny restores the grants", [L2, ("deny", None, T0), ("lift", None, T0)], (2, None, T0), "allowed", 2),
    ("a product deny blocks that product", [L2, ("deny", "shop", T0)], (2, "shop", T0), "denied", 0),
    ("a product deny leaves other products", [L2, ("deny", "shop", T0)], (2, "blog", T0), "allowed", 2),
    ("a product deny leaves calls without a product", [L2, ("deny", "shop", T0)], (2, None, T0), "allowed", 2),
    ("a product grant covers its product", [("grant", 2, "shop", ["alice"], T0)], (2, "shop", T0), "allowed", 2),
    ("a product grant does not cover another", [("grant", 2, "shop", ["alice"], T0)], (2, "blog", T0),
     "insufficient", 0),
    ("a product grant does not cover unscoped calls", [("grant", 2, "shop", ["alice"], T0)], (1, None, T0),
     "insufficient", 0),
    ("an unscoped grant covers every product", [L2], (2, "shop", T0), "allowed", 2),
    ("the highest covering grant counts", [L1, ("grant", 2, "shop", ["alice"], T0)], (2, "shop", T0), "allowed", 2),
    ("only covering grants count", [L1, ("grant", 2, "shop", ["alice"], T0)], (2, "blog", T0), "insufficient", 1),
    ("a revoked grant allows nothing", [L2, ("revoke", "g1", T0)], (1, None, T0), "insufficient", 0),
    ("a revoked proposal cannot be approved into power", [L3_PROPOSED, ("revoke", "g1", T0)], (3, None, T0),
     "insufficient", 0),
]


@pytest.mark.parametrize("steps, call, decision, held", [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX])
def test_capability_matrix(steps, call, decision, held):
    required, product, at = call
    verdict = cap(*steps).decide(required, product, at)
    assert (verdict.decision, verdict.held) == (decision, held), verdict.reason


def test_a_group_without_any_capability_record_holds_level_0():
    verdict = decide(None, "family", "github", 1, None, T0)
    assert (verdict.decision, verdict.held) == ("insufficient", 0)
    assert verdict.reason == "needs level 1 (read-only); group family was never granted access to github"


def test_refusal_reasons_name_the_needed_level_and_the_missing_approver():
    assert "second approver" in cap(L3_PROPOSED).decide(3, None, T0).reason
    assert "needs level 2 (write)" in cap(L1).decide(2, None, T0).reason
    assert "expired" in cap(L2).decide(2, None, T0 + 7 * DAY).reason
    assert "incident" in cap(L1, ("deny", None, T0)).decide(1, None, T0).reason


@pytest.mark.parametrize("steps, error", [
    ([("grant", 3, None, ["alice", "alice"], T0)], "distinct"),
    ([L3_PROPOSED, ("approve", "g1", "alice", T0)], "two-man rule"),
    ([L3_PROPOSED, ("approve", "g1", " alice ", T0)], "two-man rule"),
    ([L3_PROPOSED, ("approve", "g1", "ALICE", T0)], "two-man rule"),  # one person, whatever the case
    ([("grant", 3, None, ["alice", "Alice"], T0)], "distinct"),
    ([L2, ("approve", "g1", "bob", T0)], "not waiting for approval"),
    ([L3_BOTH, ("approve", "g1", "carol", T0)], "not waiting for approval"),
    ([("grant", 2, None, ["alice", "bob"], T0)], "one approver"),
    ([("grant", 3, None, ["alice", "bob", "carol"], T0)], "two approvers"),
    ([("grant", 4, None, ["alice"], T0)], "level must be 1"),
    ([("grant", 0, None, ["alice"], T0)], "level must be 1"),
    ([("grant", 1, None, [], T0)], "needs an approver"),
    ([("grant", 1, None, [" "], T0)], "name a person"),
    ([("grant", 1, "../x", ["alice"], T0)], "invalid product"),
    ([("deny", None, T0), ("deny", None, T0)], "already denied"),
    ([("lift", "shop", T0)], "no deny"),
    ([("revoke", None, T0)], "no grant to revoke"),
    ([L1, ("revoke", "g1", T0), ("revoke", "g1", T0)], "already revoked"),
])
def test_the_two_man_rule_and_malformed_commands_are_refused_with_the_reason(steps, error):
    with pytest.raises(CapabilityError, match=error):
        cap(*steps)


def test_a_malformed_group_folder_or_provider_cannot_get_a_capability():
    with pytest.raises(CapabilityError, match="invalid group folder"):
        ExtCapability.open("../etc", "github")
    with pytest.raises(CapabilityError, match="invalid provider"):
        ExtCapability.open("family", "Git Hub")


@pytest.mark.parametrize("method, path, level", [
    ("GET", "/repos/o/r/pulls/1", 1),
    ("HEAD", "/repos/o/r", 1),
    ("POST", "/repos/o/r/issues", 2),
    ("PATCH", "/repos/o/r/issues/3", 2),
    ("POST", "/repos/o/r/pulls", 2),
    ("PUT", "/repos/o/r/contents/README.md", 2),
    ("DELETE", "/repos/o/r/issues/comments/9", 2),
    ("PUT", "/repos/o/r/pulls/12/merge", 3),
    ("PUT", "/repos/o/r/PULLS/12/MERGE", 3),
    ("PUT", "/repos/o/r/pulls/12/merge/", 3),
    ("POST", "/repos/o/r/merges", 3),
    ("POST", "/repos/o/r/deployments", 3),
    ("POST", "/repos/o/r/deployments/5/statuses", 3),
    ("PUT", "/repos/o/r/environments/prod", 3),
    ("POST", "/repos/o/r/releases", 3),
    ("POST", "/repos/o/r/dispatches", 3),
    ("POST", "/repos/o/r/actions/workflows/ci.yml/dispatches", 3),
    ("PATCH", "/repos/o/r/git/refs/heads/main", 3),
    ("DELETE", "/repos/o/r/branches/main/protection", 3),
    ("PATCH", "/repos/o/r", 3),
    ("DELETE", "/repos/o/r", 3),
    ("PUT", "/repositories/123/pulls/7/merge", 3),  # the repository-id alias of /repos/OWNER/REPO
    ("POST", "/repositories/123/deployments", 3),
    ("DELETE", "/repositories/123", 3),
    ("POST", "/graphql", 3),  # a GraphQL mutation can merge or deploy, and the broker cannot tell which
    ("POST", "/GraphQL/", 3),
])
def test_github_operations_need_the_level_of_their_power(method, path, level):
    assert github_level(method, path) == level


async def test_the_aggregate_rebuilt_from_the_log_decides_like_the_live_one(js_store):
    live = cap(L1, ("grant", 3, "shop", ["alice"], T0), ("approve", "g2", "bob", T0 + DAY), ("deny", "blog", T0))
    await Repository(js_store, "test").save(live)
    rebuilt = await Repository(js_store, "other").get(ExtCapability, "family:github")
    assert rebuilt is not None and rebuilt.version == live.version
    for call in [(3, "shop", T0 + 2 * DAY), (3, "shop", T0 + 8 * DAY), (1, "blog", T0), (1, None, T0), (2, None, T0)]:
        assert rebuilt.decide(*call) == live.decide(*call)
