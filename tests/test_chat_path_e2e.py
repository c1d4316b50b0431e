"""The whole chat path in one process, as `nanoclaw up` runs it: webhook in → turn → reply out, and the read
models it leaves behind rebuild identically from the log (audit verify)."""

from __future__ import annotations

import nats

from events.catalogue.agent import AgentOutputProduced, AgentRunFinished, AgentRunStarted
from events.store.jetstream import JetStreamEventStore
from projections.audit import verify
from projections.catalog import all_projections
from services.cli.registry import builders
from services.harness.config import Credentials
from services.harness.host import Host
from services.harness.runner import append_emit
from services.harness.service import Emit
from services.projector.service import read_model_path
from tests.bus import events_of, settings
from tests.gateway.test_gateway_service import get, post
from tests.router.test_router_service import register
from tests.support import eventually, has_at_least, projected


async def test_webhook_turn_reply_and_a_clean_audit(nats_server, tmp_path):
    s = settings(tmp_path, nats={"urls": [nats_server.url]}, channels={"http": {"port": 0}})
    chat_path = {name: b for name, b in builders().items() if name in ("gateway", "router", "projections")}
    host = Host(s, Credentials(), chat_path, [nats_server.url])
    await host.start()
    store = JetStreamEventStore(host.nc)
    try:
        await register(store, jid="http:shop", folder="shop", requires_trigger=False)
        port = next(r for r in host.runners if r.service.name == "gateway").service.deps.channels["http"]
        await eventually(lambda: port.port is not None)
        for text in ("hi", "is the shop open?"):
            status, _ = await post(port.port, {"chat": "shop", "sender": "eve", "text": text})
            assert status == 202
        await eventually(lambda: has_at_least(events_of(store, "AgentTurnRequested"), 1))
        turn = (await events_of(store, "AgentTurnRequested"))[-1]
        await append_emit(store, Emit.new("run1", AgentRunStarted(run_id="run1", chat_jid="http:shop", group_folder="shop",
                                                                  turn_id=turn.turn_id)), source="runner", msg_id="a")
        await append_emit(store, Emit.append("run1", AgentOutputProduced(run_id="run1", chat_jid="http:shop",
                                                                         group_folder="shop", text="Open till 6.")),
                          source="runner", msg_id="b")
        await append_emit(store, Emit.append("run1", AgentRunFinished(run_id="run1", chat_jid="http:shop", group_folder="shop",
                                                                      status="succeeded", output_delivered=True)),
                          source="runner", msg_id="c")
        replies = await get(port.port, "shop", wait=10)
        assert [m["text"] for m in replies["messages"]] == ["Open till 6."]
        await eventually(lambda: has_at_least(events_of(store, "MessageSent"), 1))
        last = await store.last_seq()
        await eventually(lambda: projected(read_model_path(s.data_dir), last))
    finally:
        await host.stop()
    nc = await nats.connect(nats_server.url)
    try:
        checks = await verify(JetStreamEventStore(nc), read_model_path(s.data_dir), all_projections())
    finally:
        await nc.close()
    assert {c.table for c in checks} >= {"event_log", "chats", "messages", "registered_groups", "router_state", "agent_runs"}
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    rows = {c.table: c.live_rows for c in checks}
    assert rows["messages"] == 2 and rows["registered_groups"] == 1 and rows["agent_runs"] == 1


