"""The trusted process backend (host paths, clean environment, stop) and the TCP relay."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from services.runner.relay import TcpRelay
from services.runner.sandbox.base import Mount, SandboxSpec
from services.runner.sandbox.process import ProcessBackend, process_env
from tests.support import eventually

DUMP_ENV = "import json, os, sys; sys.stdin.read(); print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))"


def spec_for(tmp_path: Path, command: list[str], name: str = "nanoclaw-family-1") -> SandboxSpec:
    (tmp_path / "groups" / "family").mkdir(parents=True, exist_ok=True)
    (tmp_path / "groups" / "global").mkdir(exist_ok=True)
    (tmp_path / "sessions" / "family" / ".claude").mkdir(parents=True, exist_ok=True)
    (tmp_path / "projects" / "app").mkdir(parents=True, exist_ok=True)
    return SandboxSpec(name=name, image="unused", command=command, env={"TZ": "Europe/Berlin"},
                       labels={"nanoclaw.run_id": "r1"},
                       mounts=[Mount(str(tmp_path / "groups" / "family"), "/workspace/group", read_only=False),
                               Mount(str(tmp_path / "groups" / "global"), "/workspace/global"),
                               Mount(str(tmp_path / "sessions" / "family" / ".claude"), "/home/agent/.claude", False),
                               Mount(str(tmp_path / "projects" / "app"), "/workspace/extra/app")])


def test_the_process_backend_warns_loudly_when_constructed(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        ProcessBackend()
    assert any("WITHOUT ANY SANDBOX" in r.getMessage() for r in caplog.records)


async def test_the_agent_runs_in_the_group_folder_with_home_at_the_session_dir_and_a_clean_env(tmp_path: Path) -> None:
    backend = ProcessBackend(base_env={"PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": "sk-host", "LANG": "C.UTF-8"})
    proc = await backend.run(spec_for(tmp_path, [sys.executable, "-c", DUMP_ENV]))
    await proc.send_input(b"{}")
    out = json.loads(await proc.stdout.read())
    assert await proc.wait() == 0
    env, cwd = out["env"], out["cwd"]
    assert cwd == str(tmp_path / "groups" / "family")
    assert env["HOME"] == str(tmp_path / "sessions" / "family")
    assert env["NANOCLAW_WORKSPACE_GROUP"] == cwd and env["NANOCLAW_SANDBOX"] == "process"
    assert env["NANOCLAW_WORKSPACE_GLOBAL"] == str(tmp_path / "groups" / "global")
    assert json.loads(env["NANOCLAW_PATH_MAP"])["/workspace/extra/app"] == str(tmp_path / "projects" / "app")
    extra = Path(env["NANOCLAW_WORKSPACE_EXTRA"])
    assert (extra / "app").is_dir() and os.path.realpath(extra / "app") == str(tmp_path / "projects" / "app")
    assert env["TZ"] == "Europe/Berlin" and env["PATH"] == "/usr/bin:/bin"
    assert "ANTHROPIC_API_KEY" not in env  # the runner's environment is never inherited


def test_dropped_extra_mounts_disappear_from_the_extra_dir(tmp_path: Path) -> None:
    from services.runner.sandbox.process import link_extras
    spec = spec_for(tmp_path, ["x"])
    home = str(tmp_path / "sessions" / "family")
    assert (Path(link_extras(spec, home)) / "app").exists()
    fewer = SandboxSpec(name=spec.name, image="unused", mounts=[m for m in spec.mounts if "extra" not in m.container])
    assert list(Path(link_extras(fewer, home)).iterdir()) == []
    assert (tmp_path / "projects" / "app").is_dir()  # the link went, its target stayed
    assert "HOME" not in process_env(SandboxSpec(name="nanoclaw-x-1", image="i"), base={})


async def test_stop_terminates_the_whole_process_group_and_lists_running_runs(tmp_path: Path) -> None:
    backend = ProcessBackend()
    # The agent starts a child that would outlive it; the process-group signal reaches both.
    code = ("import subprocess, sys, time; sys.stdin.read(); "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
            "print(c.pid, flush=True); time.sleep(600)")
    proc = await backend.run(spec_for(tmp_path, [sys.executable, "-c", code]))
    await proc.send_input(b"{}")
    child = int((await proc.stdout.readline()).decode())
    assert await backend.list_names("nanoclaw.run_id=r1") == ["nanoclaw-family-1"]
    assert await backend.list_names("nanoclaw.role=agent") == ["nanoclaw-family-1"]
    await backend.stop("nanoclaw-family-1", 5)
    assert await proc.wait() != 0

    def child_gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{child}/stat") as f:  # a zombie awaiting its (dead) parent's reaper also counts
            return f.read().split(") ")[1].startswith("Z")
    await eventually(child_gone)
    assert await backend.list_names("nanoclaw.run_id=r1") == []
    assert await backend.remove_orphans() == []
    await backend.stop("nanoclaw-unknown-1", 1)  # unknown names are fine
    with pytest.raises(ValueError, match="Invalid container name"):
        await backend.stop("x; kill -9 1", 1)


# --- relay ----------------------------------------------------------------------------------------------------

async def echo_server() -> asyncio.Server:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()
    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def test_the_relay_forwards_both_ways_and_passes_eof_on() -> None:
    server = await echo_server()
    target = server.sockets[0].getsockname()[1]
    async with TcpRelay("127.0.0.1", 0, "127.0.0.1", target) as relay:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        payload = os.urandom(300_000)
        w.write(payload)
        w.write_eof()  # the echo server sees EOF, closes, and the relay passes that back
        assert await r.read() == payload
        w.close()
        # several clients at once
        pairs = [await asyncio.open_connection("127.0.0.1", relay.port) for _ in range(5)]
        for i, (_, cw) in enumerate(pairs):
            cw.write(f"client {i}\n".encode())
        assert [await cr.readline() for cr, _ in pairs] == [f"client {i}\n".encode() for i in range(5)]
        for _, cw in pairs:
            cw.close()
    server.close()
    await server.wait_closed()


async def test_the_relay_closes_a_client_when_the_target_refuses() -> None:
    server = await echo_server()
    dead_port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with TcpRelay("127.0.0.1", 0, "127.0.0.1", dead_port) as relay:
        r, w = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await r.read() == b""
        w.close()


async def test_closing_the_relay_drops_open_connections() -> None:
    server = await echo_server()
    relay = await TcpRelay("127.0.0.1", 0, "127.0.0.1", server.sockets[0].getsockname()[1]).start()
    r, w = await asyncio.open_connection("127.0.0.1", relay.port)
    w.write(b"hi\n")
    assert await r.readline() == b"hi\n"
    await relay.close()
    assert await r.read() == b""
    with pytest.raises(RuntimeError):
        relay.port
    w.close()
    server.close()
    await server.wait_closed()


def test_the_process_backend_runs_the_configured_agent_command_and_only_the_process_backend_takes_one() -> None:
    from services.runner.config import RunnerConfig
    from services.runner.service import backend_for

    command = [sys.executable, "-m", "tests.system.fake_agent"]
    assert backend_for(RunnerConfig(backend="process", agent_command=command)).agent_argv == command
    assert backend_for(RunnerConfig(backend="process")).agent_argv == [sys.executable, "-m", "sandbox.agent"]
    for backend in ("docker", "apple-container"):
        with pytest.raises(ValueError, match="agent_command is a process-backend setting"):
            RunnerConfig(backend=backend, agent_command=command)
    with pytest.raises(ValueError):
        RunnerConfig(backend="process", agent_command=[])
