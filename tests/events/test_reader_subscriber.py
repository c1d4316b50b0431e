"""The integrator's path: the read-only reader of `nanoclaw up` runs examples/subscriber.py, which follows
MessageReceived and MessageSent in stream order from a durable position, a sequence or a time, and can
publish nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from events.store.jetstream import JetStreamEventStore
from events.store.streams import ensure_streams
from events.subjects import EVENT_STREAM
from services.cli.reader import reader_dir, reader_password, write_reader_url
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsperms import ADMIN, READER
from services.harness.natsserver import EmbeddedNats
from tests.audit.scenario import History, phase
from tests.cli.test_cli import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "subscriber.py"


@pytest.fixture
def up_like_server(tmp_path):
    """An embedded server with `up`'s accounts and the reader's kept password, as `up` starts it."""
    data = tmp_path / "data"
    server = EmbeddedNats(data / "nats", sync_always=False,
                          auth=EmbeddedAuth(data / "nats" / "auth.conf", kept={READER: reader_password(data)}))
    server.start()
    write_reader_url(data, server.url)
    yield server, data
    server.stop()


def subscribe(data: Path, *args: str, cwd: Path) -> list[dict]:
    """Run the example to completion (``--limit``); its JSON lines."""
    result = subprocess.run([sys.executable, str(EXAMPLE), "--password-file", str(reader_dir(data) / "password"),
                             "--server", (reader_dir(data) / "url").read_text().strip(), *args],
                            cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def test_the_example_subscriber_follows_messages_in_order_from_a_position_as_the_reader_and_cannot_publish(
        up_like_server, tmp_path):
    server, data = up_like_server
    nc = await nats.connect(server.url_for(ADMIN))
    await ensure_streams(nc.jetstream())
    history = History(JetStreamEventStore(nc))
    wanted: list[tuple[int, str]] = []  # (seq, type) of every MessageReceived / MessageSent, in stream order
    times = []
    for n in range(4):
        await phase(history, n)
        times.append((await nc.jetstream().get_msg(EVENT_STREAM, await history.store.last_seq(), direct=True)).time)
    async for commit in history.store.read():
        wanted += [(commit.seq, e.eventtype) for e in commit.events if e.eventtype in ("MessageReceived", "MessageSent")]
    assert len(wanted) >= 6

    since = wanted[1][0]
    after = subscribe(data, "--since", str(since), "--limit", str(len(wanted) - 2), cwd=tmp_path)
    assert [(e["seq"], e["type"]) for e in after] == wanted[2:]

    first = subscribe(data, "--durable", "audit-tool", "--limit", "3", cwd=tmp_path)
    resumed = subscribe(data, "--durable", "audit-tool", "--limit", str(len(wanted) - 3), cwd=tmp_path)
    assert [(e["seq"], e["type"]) for e in first + resumed] == wanted, "a durable position resumes where it stopped"

    at = times[1]  # when the stream stored the last message of phase 1
    expected = [w for w in wanted if w[0] >= await _seq_of(nc, at)]
    assert 0 < len(expected) < len(wanted)
    from_time = subscribe(data, "--at", at.isoformat(), "--limit", str(len(expected)), cwd=tmp_path)
    assert [(e["seq"], e["type"]) for e in from_time] == expected

    last = await history.store.last_seq()
    reader = await nats.connect(server.url, user=READER, password=(reader_dir(data) / "password").read_text().strip(),
                                error_cb=_collect(errors := []))
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await reader.jetstream(timeout=1).publish("nc.evt.chat.message.x.MessageReceived", b"[]", stream=EVENT_STREAM)
    with pytest.raises(nats.errors.TimeoutError):  # denied: the request never reaches the JetStream API
        await reader.jetstream(timeout=1).delete_stream(EVENT_STREAM)
    await reader.close()
    violations = [str(e).lower() for e in errors]
    assert any('permissions violation for publish to "nc.evt.chat.message.x.messagereceived"' in v
               for v in violations), errors
    assert any("permissions violation for publish to \"$js.api.stream.delete.nc_events\"" in v
               for v in violations), errors
    assert await history.store.last_seq() == last  # nothing was stored, and the stream is still there
    await nc.close()


async def _seq_of(nc, when) -> int:
    """The sequence of the message stored at ``when``."""
    seq = 1
    while (await nc.jetstream().get_msg(EVENT_STREAM, seq, direct=True)).time < when:
        seq += 1
    return seq


def _collect(into: list):
    async def on_error(exc):
        into.append(exc)
    return on_error


def test_events_credentials_says_where_the_readers_credentials_are_without_printing_the_secret(tmp_path):
    missing = cli(["events", "credentials"], tmp_path)
    assert missing.returncode == 1 and "nanoclaw up` creates them" in missing.stderr
    password = reader_password(tmp_path / "data")
    assert reader_password(tmp_path / "data") == password, "the reader keeps its password across starts"
    assert oct((reader_dir(tmp_path / "data") / "password").stat().st_mode & 0o777) == "0o600"
    shown = cli(["events", "credentials"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert str((tmp_path / "data" / "reader" / "credentials.yml").resolve()) in shown.stdout
    assert "nats --server" in shown.stdout and password not in shown.stdout + shown.stderr
