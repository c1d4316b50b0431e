"""`nanoclaw up` owns its data directory and its nats-server: one `up` per data directory, never two servers on
one store (the server dies with `up`; a leftover one is stopped before anything starts), and a server that dies
is restarted with the same identities while `/readyz` says the bus is unreachable; then messages flow again."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from urllib.parse import urlparse

import nats

from events.store.jetstream import JetStreamEventStore
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsserver import CONF_FILE, PID_FILE, EmbeddedNats
from tests.bus import events_of
from tests.cli.up_process import NANOCLAW, Up, servers_on, wait_until
from tests.gateway.test_gateway_service import get, post
from tests.router.test_router_service import register
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually

NO_MODEL = "http://127.0.0.1:9"
"""The model API for tests without agent runs."""


async def register_chat(up: Up, chat: str) -> None:
    nc = await nats.connect(up.admin_url())
    try:
        await register(JetStreamEventStore(nc), jid=f"http:{chat}", folder=chat, requires_trigger=False)
    finally:
        await nc.close()


async def replies(up: Up, chat: str) -> list[str]:
    return [m["text"] for m in (await get(up.http_port, chat))["messages"]]


async def answered(up: Up, chat: str, text: str, timeout: float = 60) -> None:
    """``text`` posted to the webhook is answered: one more reply in ``chat`` (a bound, not a speed claim)."""
    before = len(await replies(up, chat))
    status, _ = await post(up.http_port, {"chat": chat, "sender": "ann", "text": text})
    assert status == 202
    await eventually(lambda: _more(up, chat, before), timeout=timeout, interval=0.1)


async def _more(up: Up, chat: str, n: int) -> bool:
    return len(await replies(up, chat)) > n


async def test_a_second_up_on_the_same_data_directory_exits_at_once_naming_the_first_and_changes_nothing(tmp_path):
    with StubAnthropic() as stub:
        first = Up(tmp_path, stub.url).start()
        try:
            await register_chat(first, "shop")
            watched = [first.run_file, first.store / "auth.conf", first.store / CONF_FILE, first.store / PID_FILE,
                       first.data / "run" / "lock"]
            before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in watched}
            server = first.server_pid()
            second = Up(tmp_path, stub.url)  # the same data directory, ports of its own
            began = time.monotonic()
            result = subprocess.run(NANOCLAW + ["up", "--port", "0"], cwd=tmp_path, env=second.env(),
                                    capture_output=True, text=True, timeout=60)
            took = time.monotonic() - began
            message = " ".join(result.stderr.split())
            assert result.returncode == 1, message
            assert (f"nanoclaw up (pid {first.proc.pid}) is already running on data directory "
                    f"{first.data.resolve()}") in message
            print(f"second up refused in {took:.2f} s")
            assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in watched} == before
            assert servers_on(first.store) == [server]
            await answered(first, "shop", "are you still there?")  # the first keeps working, agent runs included
        finally:
            first.stop()


def test_a_sigkilled_up_takes_its_nats_server_along_and_the_next_up_starts_on_the_same_store(tmp_path):
    first = Up(tmp_path, NO_MODEL).start()
    try:
        server = first.server_pid()
        first.proc.kill()
        first.proc.wait()
        wait_until(lambda: servers_on(first.store) == [], 10, f"nats-server {server} gone with its `up`")
        second = Up(tmp_path, NO_MODEL).start()
        try:
            second.server_pid()  # exactly one server on the store
        finally:
            assert "NanoClaw Bus stopped" in second.stop()
    finally:
        first.stop()
    assert servers_on(first.store) == []


def test_a_nats_server_left_running_on_the_store_is_stopped_before_up_starts_its_own(tmp_path):
    store = tmp_path / "data" / "nats"
    # What an `up` killed where the server does not die with it leaves: a server on the store and its pid file.
    leftover = EmbeddedNats(store, sync_always=False, auth=EmbeddedAuth(store / "auth.conf")).start()
    up = Up(tmp_path, NO_MODEL)
    try:
        up.start()
        assert leftover.proc.poll() is not None, "the leftover server still runs"
        up.server_pid()  # exactly one server on the store: up's own
    finally:
        up.stop()
        leftover.stop()


async def test_a_killed_nats_server_is_restarted_and_readyz_is_503_while_the_bus_is_unreachable_then_messages_flow(tmp_path):
    """Not covered here: a run live at the crash. Its agent reconnects by itself, but input piped to it while it is
    still away is rejected and queued behind the run (the run lifecycle's business, not the supervisor's)."""
    with StubAnthropic() as stub:
        up = Up(tmp_path, stub.url).start()
        try:
            await register_chat(up, "shop")
            await answered(up, "shop", "first question")
            await eventually(lambda: runs_finished(up, 1), timeout=30)  # no live run (see the docstring)
            killed = up.server_pid()
            # Kill it and keep its port taken, so the bus stays unreachable until released.
            blocker = kill_and_take_port(up, urlparse(up.admin_url()).port)
            try:
                await eventually(lambda: _status_is(up, 503), timeout=10)
                # The gateway takes messages while the bus is down (its buffer keeps them).
                status, _ = await post(up.http_port, {"chat": "shop", "sender": "ann", "text": "while it is down"})
                assert status == 202
            finally:
                blocker.close()
            released = time.monotonic()
            await eventually(lambda: _status_is(up, 200), timeout=30)
            print(f"ready again {time.monotonic() - released:.2f} s after the port was released")
            assert up.server_pid() != killed  # exactly one server on the store, a new one
            await eventually(lambda: _more(up, "shop", 1), timeout=60, interval=0.1)  # the message sent while down
            print(f"the message sent while down answered {time.monotonic() - released:.2f} s after the release")
            began = time.monotonic()
            await answered(up, "shop", "and now?")
            print(f"a new message answered in {time.monotonic() - began:.2f} s")
            assert await replies(up, "shop") == ["ok", "ok", "ok"]
        finally:
            err = up.stop()
        log = (up.data / "logs" / "nanoclaw.log").read_text()
        supervisor = [json.loads(line)["event"] for line in log.splitlines() if '"nanoclaw.natsserver"' in line]
        assert supervisor[0] == "nats-server exited; restarting it" and supervisor[-1] == "nats-server restarted"
        # The first restart met the port taken (by us): it failed, was logged and retried after a delay.
        assert "nats-server did not start again; retrying" in supervisor
        assert "NanoClaw Bus stopped" in err


def kill_and_take_port(up: Up, port: int) -> socket.socket:
    """SIGKILL the server and listen on its port before the supervisor can start it again: a race we win by
    binding the moment the server's pidfd says it exited; when the restart wins anyway, kill that one too."""
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the killed server's connections in TIME_WAIT
    for _ in range(10):
        wait_until(lambda: len(servers_on(up.store)) == 1, 30, "a server running")
        pid = up.server_pid()
        with contextlib.suppress(ProcessLookupError):
            pidfd = os.pidfd_open(pid)
            os.kill(pid, signal.SIGKILL)
            select.select([pidfd], [], [], 10)
            os.close(pidfd)
        try:
            blocker.bind(("127.0.0.1", port))
            blocker.listen(1)
            return blocker
        except OSError:
            continue  # the restart was quicker: kill that one
    raise AssertionError("the supervisor restarted the server before its port could be taken, 10 times")


async def runs_finished(up: Up, n: int) -> bool:
    nc = await nats.connect(up.admin_url())
    try:
        return len(await events_of(JetStreamEventStore(nc), "AgentRunFinished")) >= n
    finally:
        await nc.close()


async def _status_is(up: Up, code: int) -> bool:
    return await up.areadyz() == code
