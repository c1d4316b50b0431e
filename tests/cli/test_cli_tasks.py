"""`nanoclaw tasks …` against a real nats-server: the same rules and defaults as the agents' tools."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from tests.cli.test_cli import cli
from tests.cli.test_groups_and_chat import env_for


def test_tasks_can_be_added_listed_paused_resumed_updated_and_cancelled(nats_server, tmp_path):
    env = env_for(nats_server)
    assert cli(["groups", "add", "120363001@g.us", "--name", "Family", "--folder", "family"], tmp_path, env).returncode == 0
    added = cli(["tasks", "add", "family", "--prompt", "Good morning summary", "--cron", "0 8 * * *",
                 "--timezone", "Europe/Berlin"], tmp_path, env)
    assert added.returncode == 0, added.stderr
    task_id = re.search(r"scheduled (task-\S+) for family: cron 0 8 \* \* \*; next run \S+ 08:00 CE[S]?T", added.stdout).group(1)
    listed = cli(["tasks", "list"], tmp_path, env).stdout
    assert task_id in listed and "group" in listed and "once" in listed  # the documented defaults
    assert cli(["tasks", "pause", task_id], tmp_path, env).returncode == 0
    assert "paused" in cli(["tasks", "list", "--group", "family"], tmp_path, env).stdout
    again = cli(["tasks", "pause", task_id], tmp_path, env)
    assert again.returncode == 2 and "only an active task can be paused" in again.stderr
    assert cli(["tasks", "resume", task_id], tmp_path, env).returncode == 0
    updated = cli(["tasks", "update", task_id, "--interval", "3600000", "--catch-up", "skip"], tmp_path, env)
    assert updated.returncode == 0, updated.stderr
    assert "interval: 3600000" in cli(["tasks", "list"], tmp_path, env).stdout
    assert cli(["tasks", "cancel", task_id], tmp_path, env).returncode == 0
    assert task_id not in cli(["tasks", "list"], tmp_path, env).stdout
    assert cli(["tasks", "runs", task_id], tmp_path, env).returncode == 0


def test_bad_task_input_gets_an_error_naming_the_problem(nats_server, tmp_path):
    env = env_for(nats_server)
    assert cli(["groups", "add", "120363001@g.us", "--name", "Family", "--folder", "family"], tmp_path, env).returncode == 0
    cases = [(["tasks", "add", "nobody", "--prompt", "p", "--cron", "0 8 * * *"], "not a registered group"),
             (["tasks", "add", "family", "--prompt", "p", "--cron", "0 8 * *"], "invalid cron"),
             (["tasks", "add", "family", "--prompt", "p"], "exactly one of --cron, --interval, --once"),
             (["tasks", "add", "family", "--prompt", "p", "--once", "tomorrow"], "invalid time"),
             (["tasks", "add", "family", "--prompt", "p", "--interval", "60000", "--catch-up", "maybe"], "catch_up"),
             (["tasks", "pause", "task-missing"], "no task 'task-missing'")]
    for args, problem in cases:
        result = cli(args, tmp_path, env)
        assert result.returncode == 2 and problem in result.stderr, (args, result.stderr)


def test_a_once_time_in_the_past_is_refused_unless_now_is_given(nats_server, tmp_path):
    env = env_for(nats_server)
    assert cli(["groups", "add", "120363001@g.us", "--name", "Family", "--folder", "family"], tmp_path, env).returncode == 0
    past = cli(["tasks", "add", "family", "--prompt", "p", "--once", "2020-02-01T15:30:00", "--timezone", "Europe/Berlin"],
               tmp_path, env)
    assert past.returncode == 2, past.stdout
    assert ("--once 2020-02-01T15:30:00 is in the past (2020-02-01 14:30 UTC" in past.stderr
            and "add --now to run it right away" in past.stderr), past.stderr
    assert cli(["tasks", "list", "--json"], tmp_path, env).stdout == ""  # nothing was scheduled
    forced = cli(["tasks", "add", "family", "--prompt", "p", "--once", "2020-02-01T15:30:00", "--now"], tmp_path, env)
    assert forced.returncode == 0, forced.stderr
    right_away = cli(["tasks", "add", "family", "--prompt", "q", "--now"], tmp_path, env)
    assert right_away.returncode == 0, right_away.stderr
    tasks = [json.loads(line) for line in cli(["tasks", "list", "--json"], tmp_path, env).stdout.splitlines()]
    assert sorted((t["prompt"], t["schedule_type"]) for t in tasks) == [("p", "once"), ("q", "once")]
    assert all(t["next_run"] <= datetime.now(timezone.utc).isoformat() for t in tasks)  # due: the scheduler runs them now
    task_id = next(t["id"] for t in tasks if t["prompt"] == "q")
    moved = cli(["tasks", "update", task_id, "--once", "2021-01-01T00:00:00"], tmp_path, env)
    assert moved.returncode == 2 and "is in the past" in moved.stderr
