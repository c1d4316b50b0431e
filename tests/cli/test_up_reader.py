"""`nanoclaw up` provisions the read-only reader for outside tools, with a password that survives a restart."""

from __future__ import annotations

import nats
import pytest

from events.subjects import EVENT_STREAM
from tests.cli.test_up_supervision import NO_MODEL
from tests.cli.up_process import Up


async def reader_can_read_but_not_publish(up: Up) -> None:
    url = (up.data / "reader" / "url").read_text().strip()
    password = (up.data / "reader" / "password").read_text().strip()
    nc = await nats.connect(url, user="reader", password=password, max_reconnect_attempts=1)
    try:
        info = await nc.jetstream().stream_info(EVENT_STREAM)
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream(timeout=1).publish("nc.evt.chat.chat.x.ChatNameSynced", b"[]", stream=EVENT_STREAM)
        assert (await nc.jetstream().stream_info(EVENT_STREAM)).state.last_seq == info.state.last_seq
    finally:
        await nc.close()


async def test_up_provisions_a_read_only_reader_whose_password_survives_a_restart(tmp_path):
    first = Up(tmp_path, NO_MODEL).start()
    try:
        password = (first.data / "reader" / "password").read_text()
        await reader_can_read_but_not_publish(first)
    finally:
        console = first.stop()
    assert "credentials in" in console and password.strip() not in console
    assert not (first.data / "reader" / "url").exists(), "a stopped up leaves no URL behind"
    second = Up(tmp_path, NO_MODEL).start()
    try:
        assert (second.data / "reader" / "password").read_text() == password
        await reader_can_read_but_not_publish(second)
    finally:
        second.stop()
