"""`nanoclaw gov …` against a real nats-server: a person drives a task through the state machine, bound by strict
mode, optimistic locking and separation of powers like an agent."""

from __future__ import annotations

from tests.cli.test_cli import cli

CONFIG = """
governance:
  strict_mode: true
  roles:
    dev-team: [developer]
"""


def test_a_person_runs_a_task_from_inbox_to_done_under_the_same_rules_as_agents(nats_server, tmp_path):
    (tmp_path / "config.yml").write_text(CONFIG)
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}

    def gov(*args: str, expect: int = 0) -> str:
        result = cli(["gov", *args], tmp_path, env)
        assert result.returncode == expect, (args, result.stdout, result.stderr)
        return result.stdout + result.stderr

    assert cli(["groups", "add", "dev@g.us", "--name", "Dev", "--folder", "dev-team"], tmp_path, env).returncode == 0
    assert "product shop: Shop (active, risk high)" in gov("products", "add", "shop", "--name", "Shop", "--risk", "high")
    assert "created task gt-cli is INBOX (version 1)" in gov(
        "tasks", "create", "Harden checkout", "--product", "shop", "--gate", "security", "--assignee", "dev-team",
        "--id", "gt-cli", "--as", "alice")
    for version, to in enumerate(["TRIAGED", "READY", "DOING"], start=1):
        assert f"is {to} (version {version + 1})" in gov("tasks", "move", "gt-cli", to, "-v", str(version), "--as", "alice")
    assert "needs a review summary" in gov("tasks", "move", "gt-cli", "REVIEW", "-v", "4", "--as", "alice", expect=2)
    gov("tasks", "move", "gt-cli", "REVIEW", "-v", "4", "-s", "CSRF tokens everywhere", "-e", "pr/41", "--as", "alice")
    gov("tasks", "move", "gt-cli", "APPROVAL", "-v", "5", "--as", "bob")
    assert "separation of powers" in gov("tasks", "approve", "gt-cli", "security", "-v", "6", "--as", "alice", expect=2)
    assert "task gt-cli is DONE (version 8)" in gov("tasks", "approve", "gt-cli", "security", "-v", "6", "--as", "carol")
    assert "conflict: task gt-cli is at version 8" in gov("tasks", "block", "gt-cli", "-v", "6", expect=2)
    shown = gov("tasks", "show", "gt-cli")
    assert "DONE (version 8)" in shown and "approved security" in shown and "person:carol" in shown
    assert "CSRF tokens everywhere" in shown
    roles = gov("roles")
    assert "dev-team" in roles and "developer" in roles and "strict mode: on" in roles
