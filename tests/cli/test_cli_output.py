"""CLI output is safe and usable: user strings shown literally in every table, NDJSON for --json, nothing cut
when piped, and a console log in JSON lines when it is not a terminal (readable when it is)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from services.harness.logging import setup_logging
from tests.cli.test_cli import cli
from tests.cli.test_groups_and_chat import env_for

HOSTILE_NAME = "[red]Mallory[/red] :smile: [bold]x"
LONG_NAME = "A very long group name that would not fit in eighty columns next to the other columns " * 2


def compact(line: str) -> dict:
    """A line of NDJSON: one object, serialised compactly (no indentation, no spaces after separators)."""
    obj = json.loads(line)
    assert isinstance(obj, dict) and line == json.dumps(obj, ensure_ascii=False, separators=(",", ":")), line
    return obj


def test_groups_list_shows_ids_and_names_literally_never_as_emoji_or_markup(nats_server, tmp_path):
    env = {**env_for(nats_server), "COLUMNS": "80"}  # what rich assumes for a pipe: ids used to be cut there
    added = cli(["groups", "add", "http:a:b::c@d.e-f", "--name", HOSTILE_NAME, "--folder", "f1"], tmp_path, env)
    assert added.returncode == 0 and "registered http:a:b::c@d.e-f as f1" in added.stdout, added.stderr
    assert cli(["groups", "add", "term:x:smile:", "--name", LONG_NAME, "--folder", "f2"], tmp_path, env).returncode == 0
    listed = cli(["groups", "list"], tmp_path, env).stdout
    for literal in ("http:a:b::c@d.e-f", HOSTILE_NAME, "term:x:smile:", LONG_NAME.strip()):
        assert literal in listed, listed
    assert "🅰" not in listed and "😄" not in listed


def test_groups_and_tasks_lists_and_events_tail_print_ndjson_with_json(nats_server, tmp_path):
    env = env_for(nats_server)
    assert cli(["groups", "add", "http:a:b::c@d.e-f", "--name", HOSTILE_NAME, "--folder", "f1"], tmp_path, env).returncode == 0
    added = cli(["tasks", "add", "f1", "--prompt", "ping", "--interval", "3600000"], tmp_path, env)
    task_id = re.search(r"scheduled (\S+) for", added.stdout).group(1)
    groups = [compact(line) for line in cli(["groups", "list", "--json"], tmp_path, env).stdout.splitlines()]
    assert groups == [{"jid": "http:a:b::c@d.e-f", "name": HOSTILE_NAME, "folder": "f1", "trigger": "@Andy",
                       "requires_trigger": True, "is_main": False, "added_at": groups[0]["added_at"]}]
    tasks = [compact(line) for line in cli(["tasks", "list", "--json"], tmp_path, env).stdout.splitlines()]
    assert [(t["id"], t["group_folder"], t["schedule_value"]) for t in tasks] == [(task_id, "f1", "3600000")]
    assert cli(["tasks", "runs", task_id, "--json"], tmp_path, env).stdout == ""  # no runs: no lines
    tail = cli(["events", "tail", "--since", "0", "--limit", "2", "--json"], tmp_path, env)
    events = [compact(line) for line in tail.stdout.splitlines()]
    assert [e["eventtype"] for e in events] == ["GroupRegistered", "TaskCreated"]


def test_a_piped_task_list_is_not_cut_at_80_columns(nats_server, tmp_path):
    env = {**env_for(nats_server), "COLUMNS": "80"}
    assert cli(["groups", "add", "term:main", "--name", "Main", "--folder", "main"], tmp_path, env).returncode == 0
    prompt = "Summarise the news of the day in three short paragraphs"
    added = cli(["tasks", "add", "main", "--prompt", prompt, "--cron", "0 9 * * 1-5", "--timezone", "Europe/Berlin"],
                tmp_path, env)
    task_id = re.search(r"scheduled (\S+) for", added.stdout).group(1)
    listed = cli(["tasks", "list"], tmp_path, env).stdout
    assert task_id in listed and "cron: 0 9 * * 1-5 (Europe/Berlin)" in listed and "…" not in listed, listed


@pytest.mark.parametrize("tty", [False, True])
def test_the_console_log_is_json_lines_unless_it_is_a_terminal(monkeypatch, tty):
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    stream = Stream()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("INFO", None, console=True)
    try:
        logging.getLogger("nanoclaw.test").info("hello %s", "world")
    finally:
        setup_logging("INFO", None, console=False)
    [line] = stream.getvalue().splitlines()
    if tty:
        assert "hello world" in line and not line.startswith("{")
    else:
        assert json.loads(line)["event"] == "hello world"
