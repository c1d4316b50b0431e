"""``nanoclaw ext …`` against a real nats-server: grants (with the two-man rule for level 3), denies,
revocations and the call audit trail, as a person runs them."""

from __future__ import annotations

import re

from tests.bus import events_of
from tests.cli.test_cli import cli


def test_grant_approve_deny_revoke_and_list_through_the_cli(nats_server, tmp_path):
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}

    def ext(*args: str):
        return cli(["ext", *args], tmp_path, env)

    read = ext("grant", "family", "github", "--level", "1", "--approver", "alice", "--reason", "triage")
    assert read.returncode == 0 and "level 1 (read-only) for family on github" in read.stdout, read.stderr
    assert "not configured in broker.ext.providers" in read.stderr  # a note, not an error
    proposed = ext("grant", "family", "github", "--level", "3", "--approver", "alice", "--product", "shop")
    assert proposed.returncode == 0 and "needs a second approver" in proposed.stdout, proposed.stderr
    grant_id = re.search(r"proposed grant (\w+)", proposed.stdout).group(1)
    same_person = ext("approve", "family", "github", grant_id, "--approver", "alice")
    assert same_person.returncode == 2 and "two-man rule" in same_person.stderr
    approved = ext("approve", "family", "github", grant_id, "--approver", "bob")
    assert approved.returncode == 0 and "approved by alice, bob" in approved.stdout, approved.stderr
    twice = ext("grant", "family", "github", "--level", "3", "--approver", "carol", "--approver", "carol")
    assert twice.returncode == 2 and "distinct" in twice.stderr
    bad_level = ext("grant", "family", "github", "--level", "5", "--approver", "alice")
    assert bad_level.returncode == 2 and "level must be 1" in bad_level.stderr

    listed = ext("list")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "family" in line]
    assert len(rows) == 2 and any("3 deploy/merge" in r and "shop" in r and "alice,bob" in r and "active" in r
                                  for r in rows)

    assert ext("deny", "family", "github", "--by", "carol", "--reason", "incident").returncode == 0
    again = ext("deny", "family", "github", "--by", "carol")
    assert again.returncode == 2 and "already denied" in again.stderr
    assert "incident" in ext("list", "--group", "family").stdout
    assert ext("undeny", "family", "github", "--by", "carol").returncode == 0
    revoked = ext("revoke", "family", "github", "--by", "carol")
    assert revoked.returncode == 0 and grant_id in revoked.stdout, revoked.stderr
    assert "family" not in ext("list").stdout
    assert ext("list", "--all").stdout.count("revoked") == 2
    calls = ext("calls")
    assert calls.returncode == 0 and "params hmac" in calls.stdout


async def test_cli_changes_are_events_on_the_capability_aggregate(nats_server, tmp_path, js_store):
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}
    assert cli(["ext", "grant", "family", "github", "--level", "2", "--approver", "alice"], tmp_path, env).returncode == 0
    [opened] = await events_of(js_store, "ExtCapabilityOpened")
    [granted] = await events_of(js_store, "ExtCapabilityGranted")
    assert (opened.group_folder, opened.provider) == ("family", "github")
    assert (granted.level, granted.approvers, granted.product) == (2, ["alice"], None)
    assert granted.expires_at is not None and granted.expires_at > granted.granted_at
