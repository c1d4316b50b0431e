"""The embedded nats-server keeps the event store across the move to accounts: a store written when every client
shared the global account is adopted by the services' account, with its messages and durable consumers. Never two
servers on one store; a restarted server is the same server to its clients (port, users, callout)."""

from __future__ import annotations

import os
import signal
import subprocess

import nats
import pytest
from nats.js import api

from events.store.streams import StreamSettings, ensure_streams
from events.subjects import EVENT_STREAM
from services.harness.config import Credentials, NatsSettings
from services.harness.connect import connect_nats
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsperms import ADMIN
from services.harness.natsserver import PID_FILE, EmbeddedNats, NatsServerError, stop_leftover
from tests.support import eventually


async def test_a_store_of_the_global_account_is_adopted_with_its_messages_and_consumers(tmp_path):
    store = tmp_path / "nats"
    with EmbeddedNats(store, sync_always=False) as old:  # the layout before accounts: no auth, account $G
        nc = await nats.connect(old.url)
        await ensure_streams(nc.jetstream(), StreamSettings(duplicate_window_s=60))
        for i in range(3):
            await nc.jetstream().publish(f"nc.evt.chat.message.m{i}.MessageReceived", b"[]")
        await nc.jetstream().add_consumer(EVENT_STREAM, api.ConsumerConfig(durable_name="svc_router",
                                                                           ack_policy=api.AckPolicy.EXPLICIT))
        await nc.close()
    with EmbeddedNats(store, sync_always=False, auth=EmbeddedAuth(tmp_path / "auth.conf")) as new:
        nc = await nats.connect(new.admin_url)
        info = await nc.jetstream().stream_info(EVENT_STREAM)
        assert (info.state.messages, info.state.last_seq) == (3, 3)
        assert [c.name for c in await nc.jetstream().consumers_info(EVENT_STREAM)] == ["svc_router"]
        await nc.close()
    assert not (store / "jetstream" / "$G").exists() and (store / "jetstream" / "NC").is_dir()


def test_a_store_with_both_layouts_is_refused_naming_both_directories(tmp_path):
    store = tmp_path / "nats"
    (store / "jetstream" / "$G").mkdir(parents=True)
    (store / "jetstream" / "NC").mkdir()
    with pytest.raises(NatsServerError, match=r"\$G.*NC"):
        EmbeddedNats(store, sync_always=False, auth=EmbeddedAuth(tmp_path / "auth.conf")).start()


async def test_anonymous_and_wrong_password_clients_are_refused(tmp_path):
    with EmbeddedNats(tmp_path / "nats", sync_always=False, auth=EmbeddedAuth(tmp_path / "auth.conf")) as server:
        for url in (server.url, server.admin_url.replace(server.auth.passwords["admin"], "wrong")):
            with pytest.raises(Exception):
                await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=1)


def test_a_second_server_on_a_store_is_refused_while_the_first_runs(tmp_path):
    with EmbeddedNats(tmp_path / "nats", sync_always=False) as first:
        with pytest.raises(NatsServerError, match=f"pid {first.proc.pid}.*already runs on"):
            EmbeddedNats(tmp_path / "nats", sync_always=False).start()
        assert first.running


def test_a_server_left_running_on_a_store_is_stopped_by_the_next_owner_of_the_store(tmp_path):
    leftover = EmbeddedNats(tmp_path / "nats", sync_always=False).start()  # as a crashed owner leaves it
    try:
        assert stop_leftover(tmp_path / "nats") == leftover.proc.pid
        assert leftover.proc.wait(timeout=1) is not None
        with EmbeddedNats(tmp_path / "nats", sync_always=False) as server:
            assert server.running
        assert stop_leftover(tmp_path / "nats") is None  # stopped cleanly: nothing left over
    finally:
        leftover.stop()


def test_a_recorded_pid_now_used_by_an_unrelated_process_is_never_signalled(tmp_path):
    store = tmp_path / "nats"
    store.mkdir()
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        (store / PID_FILE).write_text(f"{unrelated.pid}\n")
        assert stop_leftover(store) is None
        with EmbeddedNats(store, sync_always=False) as server:
            assert server.running
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()


async def test_a_restarted_server_keeps_its_port_users_and_callout_so_clients_reconnect_and_runs_connect(tmp_path):
    server = EmbeddedNats(tmp_path / "nats", sync_always=False, auth=EmbeddedAuth(tmp_path / "auth.conf")).start()
    try:
        client = await connect_nats([server.url], NatsSettings(), server.auth.identity(ADMIN, Credentials()))
        identity = await server.auth.issue("run-1", "family")  # before the crash; the callout responder connects
        port, pid = server.port, server.proc.pid
        os.kill(pid, signal.SIGKILL)
        assert await server.wait_exit() == -signal.SIGKILL
        await server.restart()
        assert (server.port, server.running) == (port, True) and server.proc.pid != pid
        assert int((tmp_path / "nats" / PID_FILE).read_text()) == server.proc.pid
        await eventually(lambda: client.is_connected, timeout=10)
        await client.jetstream().account_info()  # the same admin password, JetStream back

        async def run_connects() -> bool:  # through the callout responder, which reconnects by itself
            try:
                agent = await nats.connect(server.url, user=identity.user, password=identity.password,
                                           inbox_prefix=identity.inbox_prefix, allow_reconnect=False)
            except Exception:  # noqa: BLE001 - refused while the responder is still away: try again
                return False
            await agent.close()
            return True
        await eventually(run_connects, timeout=20)
        await client.close()
    finally:
        server.stop()
    assert not (tmp_path / "nats" / PID_FILE).exists()
