"""The whole system as `nanoclaw up` runs it (every service as its own least-privilege NATS user, the agent
through the real SDK CLI against a stub Messages API): every commit the services write is chained, and the chain
of the whole log is intact."""

from __future__ import annotations

from events.chain import verify_log
from tests.agent_path import http_port, system
from tests.test_agent_path_e2e import replies
from tests.bus import events_of
from tests.gateway.test_gateway_service import post
from tests.router.test_router_service import register
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually, has_at_least


async def test_every_commit_of_a_real_turn_is_chained_and_the_log_verifies(tmp_path):
    with StubAnthropic(steps=[("text", "Hello back.")]) as stub:
        async with system(tmp_path, stub) as (host, store, _):
            await register(store, jid="http:shop", folder="shop", requires_trigger=False)
            for text in ("hello", "are you there?"):
                status, _ = await post(http_port(host), {"chat": "shop", "sender": "eve", "text": text})
                assert status == 202
            assert "Hello back." in await replies(http_port(host), "shop", 1)
            await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
            result = await verify_log(store)
            writers = {e.source.removeprefix("nanoclaw-bus/") async for c in store.read() for e in c.events}
    assert {"gateway", "router", "queue", "runner"} <= writers, writers
    assert result.findings == [] and result.chained == result.messages > 10

