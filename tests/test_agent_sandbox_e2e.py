"""The main job end to end on the real Docker engine: the agent runs in the hardened sandbox image, reaches
only NATS and the model proxy (relayed on the internal network's gateway), and the real claude-agent-sdk CLI
talks to a stub Messages API behind the proxy. A missing engine fails these tests (never a skip)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from tests.agent_path import REAL_KEY, http_port, service, system
from tests.bus import events_of
from tests.docker_support import agent_image, docker_client, sandbox_network
from tests.gateway.test_gateway_service import get, post
from tests.router.test_router_service import register
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually, has_at_least

pytestmark = pytest.mark.docker



@pytest.fixture
def runner_settings():
    """Runner settings with a sandbox network of this test's own, removed afterwards."""
    with sandbox_network() as settings:
        yield settings


async def texts(port: int, chat: str, n: int, timeout: float = 120) -> list[str]:
    found: list[str] = []

    async def enough() -> bool:
        found[:] = [m["text"] for m in (await get(port, chat, wait=2))["messages"]]
        return len(found) >= n
    await eventually(enough, timeout=timeout)
    return found


async def sh(container, command: str) -> tuple[int, str]:
    """Run ``command`` in the sandbox as the agent user. In a thread: the services share this event loop, and a
    grep over / blocks for seconds."""
    code, out = await asyncio.to_thread(container.exec_run, ["sh", "-c", command], user="1000:1000")
    return code, out.decode(errors="replace")


async def test_a_sandboxed_agent_answers_takes_a_follow_up_and_holds_no_secret(tmp_path, runner_settings):
    image = agent_image()
    steps = [("tool_use", "mcp__nc__send_message", {"text": "Checking."}), ("text", "Open at 9."), ("text", "Yes, Sundays too.")]
    with StubAnthropic(steps=steps) as stub:
        async with system(tmp_path, stub, backend="docker", image=image, runner=runner_settings) as (host, store, server):
            await register(store, jid="http:shop", folder="shop", requires_trigger=False)
            port = http_port(host)
            assert (await post(port, {"chat": "shop", "sender": "eve", "text": "when do you open?"}))[0] == 202
            assert await texts(port, "shop", 2) == ["Checking.", "Open at 9."]

            # The run is idle, waiting for input: a follow-up goes into the same container and session.
            assert (await post(port, {"chat": "shop", "sender": "eve", "text": "sundays?"}))[0] == 202
            assert (await texts(port, "shop", 3))[2] == "Yes, Sundays too."
            assert len(await events_of(store, "AgentRunStarted")) == 1
            assert len(await events_of(store, "AgentInputDelivered")) == 1

            started = (await events_of(store, "AgentRunStarted"))[0]
            container = await asyncio.to_thread(docker_client().containers.get, started.container)
            attrs = container.attrs["HostConfig"]
            assert attrs["ReadonlyRootfs"] and attrs["CapDrop"] == ["ALL"] and container.attrs["Config"]["User"] == "1000:1000"
            # No secret anywhere the agent can look: environment, process tables, files it can read.
            assert REAL_KEY not in " ".join(container.attrs["Config"]["Env"])
            code, out = await sh(container, "cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'")
            assert REAL_KEY not in out and "k" * 32 not in out and not any(pw in out for pw in server.auth.passwords.values())
            code, out = await sh(container, f"grep -rls '{REAL_KEY}' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=opt 2>/dev/null; true")
            assert out.strip() == ""
            code, _ = await sh(container, "touch /nanoclaw-was-here")
            assert code != 0  # read-only root filesystem
            gateway, nats_port = started_gateway(host)
            exposed = socket.create_server(("0.0.0.0", 0))  # a host service on every address, e.g. sshd
            other = exposed.getsockname()[1]
            probe = ("import socket,sys\n"
                     "def ok(h,p):\n"
                     "  try: socket.create_connection((h,p),2).close(); return 1\n"
                     "  except OSError: return 0\n"
                     f"print(ok('{gateway}',{nats_port}), ok('1.1.1.1',53), ok('172.17.0.1',{nats_port}), ok('{gateway}',{port}),"
                     f" ok('{gateway}',{other}), ok('172.17.0.1',{other}))")
            code, out = await asyncio.to_thread(container.exec_run, ["/opt/venv/bin/python", "-c", probe], user="1000:1000")
            exposed.close()
            # NATS (relayed) yes; the internet, the default bridge and any other host port (the webhook, a
            # service on 0.0.0.0: the runner's firewall) no.
            assert out.decode().split() == ["1", "0", "0", "0", "0", "0"], out
        assert stub.message_requests[0].headers["x-api-key"] == REAL_KEY


def started_gateway(host) -> tuple[str, int]:
    nats = service(host, "runner").deps.manager.endpoints.nats_url.removeprefix("nats://")
    gateway, port = nats.rsplit(":", 1)
    return gateway, int(port)


async def test_a_run_that_produces_nothing_is_killed_at_the_hard_timeout(tmp_path, runner_settings):
    release = threading.Event()

    def stall(_body):
        release.wait(120)  # the model never answers while the run is alive
        return ("text", "too late")
    with StubAnthropic(script=stall) as stub:
        runner = {**runner_settings, "timeout_ms": 1000}  # hard timeout: max(1 s, queue idle 0 + 30 s)
        async with system(tmp_path, stub, backend="docker", image=agent_image(), runner=runner,
                          queue={"idle_timeout_ms": 0}) as (host, store, _):
            await register(store, jid="http:slow", folder="slow", requires_trigger=False)
            await post(http_port(host), {"chat": "slow", "sender": "eve", "text": "hello?"})
            await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 1), timeout=120)
            finished = (await events_of(store, "AgentRunFinished"))[0]
            assert finished.status == "timed_out" and "timed out" in (finished.error or "")
            started = (await events_of(store, "AgentRunStarted"))[0]
            assert not docker_client().containers.list(all=True, filters={"name": started.container})
            release.set()
