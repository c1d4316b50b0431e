"""A retried dead letter is re-driven by the owning service under its own least-privilege NATS identity
(services/harness/natsperms.py): reading the original by direct get, recording the outcome on its own
dead-letter ledger. The operator's retry request is appended with the admin identity, as `nanoclaw dlq` does."""

from __future__ import annotations

import pytest

from events.catalogue.chat import MessageReceived
from events.store.jetstream import JetStreamEventStore
from events.store.streams import ensure_streams
from services.cli.deadletters import request_retry
from services.harness.config import Credentials, NatsSettings
from services.harness.connect import connect_nats
from services.harness.dlq_ledger import read_ledger
from services.harness.emit import append_emit
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsperms import ADMIN
from services.harness.natsserver import EmbeddedNats
from services.harness.runner import ServiceRunner
from services.harness.service import Emit, Service
from tests.bus import FAST, events_of
from tests.support import eventually, has_at_least


@pytest.fixture
def server(tmp_path):
    s = EmbeddedNats(tmp_path / "nats", sync_always=False, auth=EmbeddedAuth(tmp_path / "nats" / "auth.conf")).start()
    yield s
    s.stop()


async def test_the_router_identity_re_drives_its_own_dead_letter_and_records_the_outcome(server):
    admin_nc = await connect_nats([server.url], NatsSettings(), server.auth.identity(ADMIN, Credentials()))
    await ensure_streams(admin_nc.jetstream())
    admin = JetStreamEventStore(admin_nc)
    router_nc = await connect_nats([server.url], NatsSettings(), server.auth.identity("router", Credentials()))
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    router_nc._error_cb = on_error  # permission violations arrive here, not as exceptions
    state = {"broken": True}

    async def on_message(_delivery, _deps):
        if state["broken"]:
            raise RuntimeError("cannot route this yet")
        return []

    runner = ServiceRunner(Service("router", {"MessageReceived": on_message}), router_nc,
                           JetStreamEventStore(router_nc), FAST)
    await runner.start()
    try:
        msg = MessageReceived(channel="terminal", chat_jid="term:main", message_id="m1", sender="term:me",
                              sender_name="me", text="hi", timestamp="2026-03-01T10:00:00.000Z")
        await append_emit(admin, Emit.new("term:main/m1", msg), source="test", msg_id="m1")
        await eventually(lambda: has_at_least(events_of(admin, "MessageDeadLettered"), 1), timeout=30)
        [letter] = (await read_ledger(admin, "router")).letters.values()
        state["broken"] = False
        await request_retry(admin, letter)
        await eventually(lambda: has_at_least(events_of(admin, "DeadLetterRetrySucceeded"), 1), timeout=30)
        assert (await read_ledger(admin, "router")).letters[("router", letter.stream_seq, 1)].state == "retried"
    finally:
        await runner.stop()
        await router_nc.close()
        await admin_nc.close()
    assert [e for e in errors if "Permissions Violation" in str(e)] == []
