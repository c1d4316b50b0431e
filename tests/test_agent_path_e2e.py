"""The main job end to end, in trusted process mode (the Docker variant is tests/test_agent_sandbox_e2e.py):
a webhook message → router → queue → runner → the real claude-agent-sdk CLI (through the model proxy, to a
stub Messages API) → replies back out, including one sent with the ``send_message`` tool over NATS."""

from __future__ import annotations

from events.store.jetstream import JetStreamEventStore
from tests.agent_path import REAL_KEY, http_port, system
from tests.bus import events_of
from tests.gateway.test_gateway_service import get, post
from tests.router.test_router_service import register
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually, has_at_least


async def replies(port: int, chat: str, n: int) -> list[str]:
    texts: list[str] = []
    async def enough() -> bool:
        texts[:] = [m["text"] for m in (await get(port, chat, wait=2))["messages"]]
        return len(texts) >= n
    await eventually(enough, timeout=60)
    return texts


async def test_a_message_is_answered_by_the_agent_with_a_tool_reply_and_a_final_reply(tmp_path):
    steps = [("tool_use", "mcp__nc__send_message", {"text": "On it."}), ("text", "The shop opens at 9.")]
    with StubAnthropic(steps=steps) as stub:
        async with system(tmp_path, stub) as (host, store, _):
            await register(store, jid="http:shop", folder="shop", requires_trigger=False)
            status, _ = await post(http_port(host), {"chat": "shop", "sender": "eve", "text": "when do you open?"})
            assert status == 202
            assert await replies(http_port(host), "shop", 2) == ["On it.", "The shop opens at 9."]
            await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 0))
            usage = await _usage(store)
            assert usage and all(u.group_folder == "shop" for u in usage)
        first = stub.message_requests[0]
        assert first.headers["x-api-key"] == REAL_KEY  # injected by the proxy; the agent only had its run token
        assert "when do you open?" in str(first.body["messages"])


async def _usage(store: JetStreamEventStore):
    await eventually(lambda: has_at_least(events_of(store, "ModelUsageRecorded"), 2))
    return await events_of(store, "ModelUsageRecorded")


async def test_in_up_every_service_has_its_own_identity_and_cannot_write_anothers_events(tmp_path):
    from events.catalogue.queue import RunQueued
    from events.errors import EventStoreError
    from services.harness.emit import append_emit
    from services.harness.service import Emit

    with StubAnthropic(steps=[("text", "hi")]) as stub:
        async with system(tmp_path, stub) as (host, store, server):
            connections = {r.service.name: r.nc for r in host.runners}
            assert len({id(nc) for nc in connections.values()} | {id(host.nc)}) == len(connections) + 1
            router = JetStreamEventStore(connections["router"], timeout=1.0)
            forged = Emit.append("default", RunQueued(run_id="r1", chat_jid="http:shop", group_folder="shop",
                                                      prompt="forged"))
            try:
                await append_emit(router, forged, source="router", msg_id="forged-1")
            except EventStoreError:
                pass
            else:
                raise AssertionError("the router's identity appended a queue event")
            assert await events_of(store, "RunQueued") == []
