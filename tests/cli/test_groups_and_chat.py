"""`nanoclaw groups …` and the terminal channel (`nanoclaw chat`) against a real nats-server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import nats

from events.catalogue.agent import AgentOutputProduced
from events.store.jetstream import JetStreamEventStore
from events.store.streams import ensure_streams
from services.harness.runner import append_emit
from services.harness.service import Emit
from services.router.service import build as build_router
from tests.bus import context, events_of, running, settings
from tests.cli.test_cli import NANOCLAW, REPO, cli
from tests.support import eventually, has_at_least


async def finished(proc, timeout: float) -> tuple[bytes, bytes]:
    """Close ``proc``'s stdin (asyncio's ``communicate()`` does not) and wait for it; on timeout, interrupted and
    failed with what it printed."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        async with asyncio.timeout(timeout):
            return await proc.communicate()
    except TimeoutError:
        proc.send_signal(2)
        stdout, stderr = await proc.communicate()
        raise AssertionError(f"still running after {timeout} s; stdout: {stdout.decode()!r}; stderr: {stderr.decode()[-4000:]}")


def env_for(server) -> dict[str, str]:
    return {"NANOCLAW_NATS__URLS": f'["{server.url}"]'}


def test_groups_can_be_added_listed_updated_removed_and_added_again(nats_server, tmp_path):
    env = env_for(nats_server)
    added = cli(["groups", "add", "120363001@g.us", "--name", "Family", "--folder", "family"], tmp_path, env)
    assert added.returncode == 0 and "registered 120363001@g.us as family (trigger @Andy)" in added.stdout, added.stderr
    listed = cli(["groups", "list"], tmp_path, env)
    assert "family" in listed.stdout and "120363001@g.us" in listed.stdout
    clash = cli(["groups", "add", "999@g.us", "--name", "Other", "--folder", "family"], tmp_path, env)
    assert clash.returncode == 2 and "folder 'family' is already used by 120363001@g.us" in clash.stderr
    bad = cli(["groups", "add", "998@g.us", "--name", "X", "--folder", "../etc"], tmp_path, env)
    assert bad.returncode == 2 and "folder" in bad.stderr
    reserved = cli(["groups", "add", "997@g.us", "--name", "X", "--folder", "global"], tmp_path, env)
    assert reserved.returncode == 2 and "global" in reserved.stderr
    assert cli(["groups", "update", "120363001@g.us", "--trigger", "@Claw"], tmp_path, env).returncode == 0
    assert "@Claw" in cli(["groups", "list"], tmp_path, env).stdout
    assert cli(["groups", "remove", "120363001@g.us"], tmp_path, env).returncode == 0
    assert "120363001@g.us" not in cli(["groups", "list"], tmp_path, env).stdout
    again = cli(["groups", "add", "120363001@g.us", "--name", "Family", "--folder", "family"], tmp_path, env)
    assert again.returncode == 0, again.stderr


def test_chat_without_a_running_bus_says_to_start_it(tmp_path):
    result = cli(["chat"], tmp_path)
    assert result.returncode == 1 and "nanoclaw up" in result.stderr


async def test_terminal_chat_goes_through_the_bus_and_prints_the_reply(nats_server, tmp_path):
    nc = await nats.connect(nats_server.url)
    await ensure_streams(nc.jetstream())
    store = JetStreamEventStore(nc)
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_for(nats_server)}
    async with running(build_router, context(nc, store, settings(tmp_path))):
        proc = await asyncio.create_subprocess_exec(*NANOCLAW, "chat", "--group", "main", cwd=tmp_path, env=env,
                                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdin.write(b"hello from the terminal\n")
        await proc.stdin.drain()
        await eventually(lambda: has_at_least(events_of(store, "AgentTurnRequested"), 1), timeout=30)
        [turn] = await events_of(store, "AgentTurnRequested")
        assert turn.chat_jid == "term:main" and turn.channel == "terminal" and turn.is_main
        assert "hello from the terminal" in turn.prompt
        out = AgentOutputProduced(run_id="r1", chat_jid="term:main", group_folder="main", text="Hi there!")
        await append_emit(store, Emit.new("r1", out), source="runner", msg_id="o1")
        await eventually(lambda: has_at_least(events_of(store, "MessageSent"), 1), timeout=30)
        stdout, stderr = await finished(proc, 30)  # end of input: every line was answered
    await nc.close()
    assert proc.returncode == 0, stderr.decode()
    assert "Andy: Hi there!" in stdout.decode()
    assert "registered term:main as group 'main' (main)" in stderr.decode()
