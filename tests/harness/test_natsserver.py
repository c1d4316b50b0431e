"""The embedded nats-server keeps the event store across the move to accounts: a store written when every client
shared the global account is adopted by the services' account, with its messages and durable consumers."""

from __future__ import annotations

import nats
import pytest
from nats.js import api

from events.store.streams import StreamSettings, ensure_streams
from events.subjects import EVENT_STREAM
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsserver import EmbeddedNats, NatsServerError


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
