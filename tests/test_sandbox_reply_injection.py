"""From inside a live Docker sandbox, with its own run identity: a tool request whose reply subject names the event
stream, the JetStream API or another group's subjects changes nothing outside the sandbox's account — the log holds
only events, every consumer is still there, the other group is still answered, and a restart works (issue 20)."""

from __future__ import annotations

import asyncio
import json

import pytest

from events.envelope import decode_events
from events.subjects import EVENT_STREAM
from services.cli.registry import builders
from services.harness.host import embedded_host
from tests.agent_path import http_port, system
from tests.bus import events_of
from tests.docker_support import agent_image, docker_client
from tests.gateway.test_gateway_service import post
from tests.router.test_router_service import register
from tests.stub_anthropic import StubAnthropic
from tests.test_agent_sandbox_e2e import runner_settings, started_gateway, texts  # noqa: F401  (fixture)

pytestmark = pytest.mark.docker

FORGED = ["nc.evt.router.conversation.http:beta.AgentTurnRequested", f"$JS.API.CONSUMER.DELETE.{EVENT_STREAM}.svc_router",
          f"$JS.API.STREAM.PURGE.{EVENT_STREAM}", "nc.ipc.beta.send_message", "nc.dlq.router"]

ATTACK = """
import asyncio, json, sys
import nats
url, user, password, inbox, forged = sys.argv[1:6]
async def main():
    nc = await nats.connect(url, user=user, password=password, inbox_prefix=inbox, allow_reconnect=False)
    for reply in json.loads(forged):
        await nc.publish("nc.ipc.alpha.list_tasks", b"{}", reply=reply)
    await nc.flush()
    answer = await nc.request("nc.ipc.alpha.list_tasks", b"{}", timeout=10)
    print(answer.data.decode())
    await nc.close()
asyncio.run(main())
"""


async def stream_holds_only_events(nc) -> int:
    last = (await nc.jetstream().stream_info(EVENT_STREAM)).state.last_seq
    for seq in range(1, last + 1):
        decode_events((await nc.jetstream().get_msg(EVENT_STREAM, seq)).data)
    return last


async def test_forged_reply_subjects_from_inside_a_sandbox_reach_nothing_outside_it(tmp_path, runner_settings):
    with StubAnthropic(steps=[("text", "alpha is ready.")]) as stub:
        async with system(tmp_path, stub, backend="docker", image=agent_image(), runner=runner_settings) as (host, store, server):
            await register(store, jid="http:alpha", folder="alpha", requires_trigger=False)
            await register(store, jid="http:beta", folder="beta", requires_trigger=False)
            port = http_port(host)
            await post(port, {"chat": "alpha", "sender": "mallory", "text": "hello"})
            assert await texts(port, "alpha", 1) == ["alpha is ready."]  # the run is now idle, its sandbox alive

            started = (await events_of(store, "AgentRunStarted"))[0]
            identity = server.auth.live(started.run_id)
            gateway, nats_port = started_gateway(host)
            container = await asyncio.to_thread(docker_client().containers.get, started.container)
            consumers = sorted(c.name for c in await host.nc.jetstream().consumers_info(EVENT_STREAM))
            code, out = await asyncio.to_thread(
                container.exec_run, ["/opt/venv/bin/python", "-c", ATTACK, f"nats://{gateway}:{nats_port}", identity.user,
                                     identity.password, identity.inbox_prefix, json.dumps(FORGED)], user="1000:1000")
            # The sandbox's own, honest request is still answered.
            assert code == 0 and json.loads(out.decode().strip().splitlines()[-1]) == \
                {"ok": True, "result": "No scheduled tasks found."}, out

            await stream_holds_only_events(host.nc)
            assert sorted(c.name for c in await host.nc.jetstream().consumers_info(EVENT_STREAM)) == consumers
            assert not await events_of(store, "AgentTurnRequested") or all(
                t.chat_jid == "http:alpha" for t in await events_of(store, "AgentTurnRequested"))
            # The other group is served as usual.
            await post(port, {"chat": "beta", "sender": "bob", "text": "are you there?"})
            assert await texts(port, "beta", 1) == ["ok"]
            settings, credentials = host.settings, host.credentials

        # ... and so it is after a restart on the same log (the brick used to be permanent).
        server.start()
        again = embedded_host(settings, credentials, builders(), server)
        await again.start()
        try:
            await post(http_port(again), {"chat": "beta", "sender": "bob", "text": "still there?"})
            assert (await texts(http_port(again), "beta", 2))[1] == "ok"
            await stream_holds_only_events(again.nc)
        finally:
            await again.stop()
            server.stop()
