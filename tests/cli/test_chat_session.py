"""`nanoclaw chat` at its edges (issue 16): scripted use (-m, piped stdin), replies made while the chat was
closed, the bus going away and coming back, and a reply arriving while the prompt is shown. A real nats-server;
the replies are ``OutboundMessageRequested`` events as the router appends them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading

import nats

from events.catalogue.chat import OutboundMessageRequested
from events.catalogue.queue import RunAbandoned
from events.store.jetstream import JetStreamEventStore
from events.store.streams import ensure_streams
from services.harness.emit import append_emit
from services.harness.natsserver import EmbeddedNats
from services.harness.service import Emit
from tests.bus import events_of
from tests.cli.test_cli import NANOCLAW, REPO
from tests.cli.test_groups_and_chat import finished
from tests.support import eventually, has_at_least


def chat_env(url: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "NANOCLAW_NATS__URLS": f'["{url}"]'}


async def start_chat(tmp_path, url: str, *args: str, **streams) -> asyncio.subprocess.Process:
    streams = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **streams}
    return await asyncio.create_subprocess_exec(*NANOCLAW, "chat", *args, cwd=tmp_path, env=chat_env(url), **streams)


async def reply(store, key: str, text: str, jid: str = "term:main") -> int:
    request = OutboundMessageRequested(channel="terminal", chat_jid=jid, text=text)
    return (await append_emit(store, Emit.new(key, request), source="router", msg_id=key)).seq


async def received(store, n: int) -> list:
    await eventually(lambda: has_at_least(events_of(store, "MessageReceived"), n), timeout=30)
    return await events_of(store, "MessageReceived")


async def seq_of(store, event_type: str, text: str) -> int:
    async for commit in store.read():
        if any(e.eventtype == event_type and e.data.get("text") == text for e in commit.events):
            return commit.seq
    raise AssertionError(f"no {event_type} with text {text!r}")


async def test_chat_m_waits_for_the_reply_prints_it_and_exits_zero(nats_server, js_store, tmp_path):
    proc = await start_chat(tmp_path, nats_server.url, "-m", "what time is it?")
    [msg] = await received(js_store, 1)
    assert msg.text == "what time is it?" and msg.chat_jid == "term:main"
    await reply(js_store, "r1", "It is noon.")
    stdout, stderr = await finished(proc, 60)
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode() == "Andy: It is noon.\n"


async def test_chat_m_without_a_reply_exits_three_with_one_clear_line(nats_server, tmp_path):
    proc = await start_chat(tmp_path, nats_server.url, "-m", "hello?", "--timeout", "1")
    stdout, stderr = await finished(proc, 60)
    assert proc.returncode == 3 and stdout == b""
    assert "error: no reply within 1 s" in stderr.decode() and "Traceback" not in stderr.decode()


async def test_chat_m_exits_four_with_one_clear_line_when_the_queue_gives_up_on_the_message(nats_server, js_store, tmp_path):
    proc = await start_chat(tmp_path, nats_server.url, "-m", "are you there?")
    await received(js_store, 1)
    gave_up = RunAbandoned(chat_jid="term:main", group_folder="main", run_id="r1", attempts=5, reason="5 failed runs")
    await append_emit(js_store, Emit.append("default", gave_up), source="queue", msg_id="abandoned")
    stdout, stderr = await finished(proc, 60)
    assert proc.returncode == 4 and stdout == b""
    assert "the assistant gave up on these messages after 5 attempts" in stderr.decode()
    assert "Traceback" not in stderr.decode()


async def test_piped_lines_are_sent_one_by_one_each_after_the_previous_reply(nats_server, js_store, tmp_path):
    proc = await start_chat(tmp_path, nats_server.url)
    proc.stdin.write(b"first\nsecond\n")
    await proc.stdin.drain()
    proc.stdin.close()  # the input ends at once: the chat must still wait for both replies
    [first] = await received(js_store, 1)
    assert first.text == "first"
    first_reply = await reply(js_store, "r1", "one")
    [_, second] = await received(js_store, 2)
    assert second.text == "second" and await seq_of(js_store, "MessageReceived", "second") > first_reply
    await reply(js_store, "r2", "two")
    stdout, stderr = await finished(proc, 60)
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode() == "Andy: one\nAndy: two\n"


async def test_replies_made_while_the_chat_was_closed_are_shown_once_when_it_opens(nats_server, js_store, tmp_path):
    await reply(js_store, "early", "I finished the report while you were away.")
    await reply(js_store, "other", "not for this chat", jid="term:other")
    opened = await start_chat(tmp_path, nats_server.url, stdin=subprocess.DEVNULL)
    stdout, stderr = await finished(opened, 60)
    assert opened.returncode == 0, stderr.decode()
    assert stdout.decode() == "Andy: I finished the report while you were away.\n"
    assert "1 reply made while this chat was closed" in stderr.decode()
    [sent] = await events_of(js_store, "MessageSent")
    assert sent.chat_jid == "term:main"
    again = await start_chat(tmp_path, nats_server.url, stdin=subprocess.DEVNULL)
    stdout, _ = await finished(again, 60)
    assert again.returncode == 0 and stdout == b""  # delivered once: it has its receipt


async def test_the_chat_survives_the_bus_going_away_and_shows_what_arrived_meanwhile(tmp_path):
    store_dir = tmp_path / "nats"
    server = EmbeddedNats(store_dir, sync_always=False).start()
    nc = await nats.connect(server.url)
    await ensure_streams(nc.jetstream())
    proc = await start_chat(tmp_path, server.url)
    try:
        proc.stdin.write(b"one\n")
        await proc.stdin.drain()
        await received(JetStreamEventStore(nc), 1)
        await nc.close()
        server.stop()
        await eventually(lambda: _said(proc, b"the bus is down"), timeout=30)

        server = EmbeddedNats(store_dir, port=server.port, sync_always=False).start()
        nc = await nats.connect(server.url)
        store = JetStreamEventStore(nc)
        await reply(store, "r1", "answered while you were disconnected")
        await eventually(lambda: has_at_least(events_of(store, "MessageSent"), 1), timeout=30)
        proc.stdin.write(b"two\n")
        await proc.stdin.drain()
        await received(store, 2)
        await reply(store, "r2", "and after")
        stdout, stderr = await finished(proc, 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        await nc.close()
        server.stop()
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode() == "Andy: answered while you were disconnected\nAndy: and after\n"
    assert "reconnected to the bus" in stderr.decode() and "Traceback" not in stderr.decode()
    assert "ConnectionClosedError" not in stderr.decode()


_stderr_seen: dict[int, bytes] = {}


async def _said(proc: asyncio.subprocess.Process, text: bytes) -> bool:
    """For :func:`eventually`: ``proc`` has written ``text`` on stderr (read as it comes)."""
    seen = _stderr_seen.setdefault(proc.pid, b"")
    try:
        async with asyncio.timeout(0.2):
            seen += await proc.stderr.read(4096)
    except TimeoutError:
        pass
    _stderr_seen[proc.pid] = seen
    return text in seen


async def test_a_reply_arriving_at_the_prompt_is_printed_on_its_own_line_and_the_prompt_redrawn(nats_server, js_store, tmp_path):
    master, slave = os.openpty()
    proc = await start_chat(tmp_path, nats_server.url, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    screen = bytearray()
    reader = threading.Thread(target=_drain, args=(master, screen), daemon=True)
    reader.start()
    try:
        await eventually(lambda: b"you> " in screen, timeout=30, detail=screen)
        os.write(master, b"draft")  # typed, not yet sent
        await eventually(lambda: b"draft" in screen, timeout=30, detail=screen)
        await reply(js_store, "r1", "Good morning!")
        await eventually(lambda: b"Good morning!" in screen, timeout=30, detail=screen)
        await eventually(lambda: screen.rstrip().endswith(b"you> draft"), timeout=30, detail=screen)
        os.write(master, b"\x15\x04")  # Ctrl+U clears the draft, Ctrl+D ends the chat
        await finished(proc, 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0, bytes(screen)
    assert b"\r\x1b[2KAndy: Good morning!\r\nyou> draft" in screen, bytes(screen)
    assert b"you> Andy:" not in screen and b"draftAndy" not in screen


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        into.extend(chunk)


async def test_the_chat_follows_an_up_restart_to_its_new_port_and_new_passwords(tmp_path):
    """`up` restarted: a new embedded server (fresh passwords, maybe another port) and a new run file. The chat
    finds it through the run file, as it found the first one."""
    from services.cli.bus import nats_store_dir, run_file, write_run_file
    from services.harness.config import Credentials, NatsSettings, Settings
    from services.harness.connect import connect_nats
    from services.harness.natsembedded import EmbeddedAuth
    from services.harness.natsperms import ADMIN

    settings = Settings(data_dir=tmp_path / "data")
    store_dir = nats_store_dir(settings)

    async def start_up() -> tuple[EmbeddedNats, object]:
        server = EmbeddedNats(store_dir, sync_always=False, auth=EmbeddedAuth(store_dir / "auth.conf")).start()
        write_run_file(settings, server.admin_url)
        nc = await connect_nats([server.url], NatsSettings(), server.auth.identity(ADMIN, Credentials()))
        await ensure_streams(nc.jetstream())
        return server, nc

    server, nc = await start_up()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NANOCLAW_DATA_DIR": str(settings.data_dir)}
    proc = await asyncio.create_subprocess_exec(*NANOCLAW, "chat", cwd=tmp_path, env=env, stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"before the restart\n")
        await proc.stdin.drain()
        await received(JetStreamEventStore(nc), 1)
        await nc.close()
        server.stop()
        run_file(settings).unlink()  # as `up` does when it stops
        await eventually(lambda: _said(proc, b"the bus is down"), timeout=30)

        server, nc = await start_up()
        await reply(JetStreamEventStore(nc), "r1", "hello again")
        proc.stdin.close()
        stdout, stderr = await finished(proc, 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        await nc.close()
        server.stop()
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode() == "Andy: hello again\n" and "reconnected to the bus" in stderr.decode()
