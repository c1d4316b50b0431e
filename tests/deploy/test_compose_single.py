"""The `single` compose profile on the real engine: images built here, one NATS node with the generated
identities and encryption at rest, every service in its own container, the runner starting hardened sandboxes
through the Docker API proxy, and the real agent CLI answering through the broker's model proxy from a stub of
the Messages API on this host.

Covered: webhook message → agent reply → `nanoclaw audit verify` clean; what a sandbox can reach on the
deployment's network; the runner's engine access is the proxy's, not the socket's; a runner SIGKILLed mid-turn
(during the model call) answers the turn exactly once after its restart."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.deploy.compose import API_KEY, Deployment, count, events, wait_events
from tests.sandbox import user_texts
from tests.stub_anthropic import StubAnthropic

pytestmark = [pytest.mark.docker, pytest.mark.deploy, pytest.mark.timeout(900)]

SLOW_S = 20
"""How long the stub holds the first model call of the crash test: the runner is killed inside this window."""


class Model:
    """The stub's script: answers name the group's message; the crash test's first call is slow."""

    def __init__(self) -> None:
        self.slow_call_started = threading.Event()

    def __call__(self, body: dict) -> tuple:
        said = " ".join(user_texts(body))
        if "survive a crash" in said and not self.slow_call_started.is_set():
            self.slow_call_started.set()
            time.sleep(SLOW_S)  # the turn is mid-flight; this answer goes to a sandbox whose runner is gone
            return ("text", "too late: the first run's answer")
        if "survive a crash" in said:
            return ("text", "answered after the crash")
        return ("text", "Hello from the sandbox")


@pytest.fixture(scope="module")
def model():
    script = Model()
    with StubAnthropic(host="0.0.0.0", script=script) as stub:
        stub.model = script
        yield stub


@pytest.fixture(scope="module")
def single(tmp_path_factory, model):
    deployment = Deployment(tmp_path_factory.mktemp("single"), "single", model_port=model.port)
    try:
        deployment.up()
        yield deployment
    finally:
        deployment.down()


REACH = ("import socket\n"
         "def ok(host, port):\n"
         "    try:\n"
         "        socket.create_connection((host, port), 2).close()\n"
         "        return 1\n"
         "    except OSError:\n"
         "        return 0\n"
         "print(ok('nats', 4222), ok('broker', 8788), ok('1.1.1.1', 53), ok('gateway', 8787), ok('router', 8090))")


async def test_a_webhook_message_gets_the_agents_reply_and_the_audit_is_clean(single, model):
    single.add_group("support")
    single.post("support", "hello from the webhook")
    assert await single.wait_replies("support", 1) == ["Hello from the sandbox"]
    # The broker injected the key; the sandbox presented only its run token.
    assert model.message_requests and all(r.headers.get("x-api-key") == API_KEY for r in model.message_requests)

    seen = await events(single)
    assert count(seen, "AgentTurnRequested", "support") == 1 and count(seen, "AgentRunStarted", "support") == 1
    # The sandbox (idle, waiting for a follow-up) reaches NATS and the model proxy by name, and nothing else.
    [started] = [d for t, d in seen if t == "AgentRunStarted" and d["group_folder"] == "support"]
    sandbox = next(c for c in single.sandboxes() if c.name == started["container"])
    code, out = sandbox.exec_run(["/opt/venv/bin/python", "-c", REACH], user="1000:1000")
    assert out.decode().split() == ["1", "1", "0", "0", "0"], out
    assert sandbox.attrs["HostConfig"]["ReadonlyRootfs"] and API_KEY not in " ".join(sandbox.attrs["Config"]["Env"])

    # The store is encrypted at rest: the message text is not in the NATS volume's files.
    probe = single.compose("exec", "-T", "nats", "grep", "-rl", "hello from the webhook", "/data", check=False)
    assert probe.returncode == 1 and not probe.stdout, probe.stdout
    verify = single.compose("exec", "-T", "projections", "nanoclaw", "audit", "verify", check=False, timeout=180)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_runner_reaches_the_engine_only_through_the_proxy_and_its_policy(single):
    no_socket = single.compose("exec", "-T", "runner", "test", "-e", "/var/run/docker.sock", check=False)
    assert no_socket.returncode == 1
    privileged = single.compose("exec", "-T", "runner", "docker", "run", "--rm", "--privileged", "--pull=never",
                                "nanoclaw-agent:latest", "true", check=False)
    assert privileged.returncode != 0 and "docker-proxy" in privileged.stdout + privileged.stderr
    nats_stop = single.compose("exec", "-T", "runner", "docker", "stop", single.container("nats").name, check=False)
    assert nats_stop.returncode != 0 and "docker-proxy" in nats_stop.stdout + nats_stop.stderr


async def test_a_runner_killed_mid_turn_answers_the_turn_once_after_restart(single, model):
    single.add_group("crash")
    single.post("crash", "survive a crash")
    assert await asyncio.to_thread(model.model.slow_call_started.wait, 180), "the model was never called"
    slow_since = time.monotonic()
    single.container("runner").kill(signal="SIGKILL")
    single.compose("up", "-d", "runner")  # the restart policy's job, done at once
    single.wait_healthy(["runner"])

    assert await single.wait_replies("crash", 1) == ["answered after the crash"]
    await asyncio.sleep(max(0.0, SLOW_S + 5 - (time.monotonic() - slow_since)))  # the first run's answer is due
    assert single.replies("crash", wait=0) == ["answered after the crash"]  # once, and never the orphan's

    seen = await wait_events(single, lambda s: count(s, "AgentRunFinished", "crash") >= 1)
    assert len([d for t, d in seen if t == "MessageReceived" and "survive a crash" in str(d)]) == 1
    # The interrupted run failed before any output: the queue's retry (v1 scheduleRetry) dispatched the same turn
    # again, as a new run (the router asks once; docs/agent-runs.md, "Run lifecycle: one owner, the queue").
    assert count(seen, "RunRetryScheduled", "crash") == 1 and count(seen, "AgentTurnRequested", "crash") == 1
    dispatched = [d for t, d in seen if t == "RunDispatched" and d["group_folder"] == "crash"]
    assert len(dispatched) == 2 and dispatched[0]["turn_ids"] == dispatched[1]["turn_ids"]
    assert dispatched[0]["run_id"] != dispatched[1]["run_id"] and dispatched[1]["attempt"] == 1
    finished = [d for t, d in seen if t == "AgentRunFinished" and d["group_folder"] == "crash"]
    assert [d.get("interrupted") for d in finished] == [True]  # the re-run is still open, waiting for follow-ups
    started = [d["container"] for t, d in seen if t == "AgentRunStarted" and d["group_folder"] == "crash"]
    assert len(started) == 2
    assert started[0] not in {c.name for c in single.sandboxes()}  # the orphan was stopped and removed


SEED_SESSION = ("import os, sqlite3\n"
                "os.makedirs('/data/whatsapp', exist_ok=True)\n"
                "con = sqlite3.connect('/data/whatsapp/session.sqlite3')\n"
                "con.execute('CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY, registration_id BIGINT)')\n"
                "con.execute(\"INSERT INTO whatsmeow_device VALUES ('4915100000000.0:1@s.whatsapp.net', 1)\")\n"
                "con.commit()\n")


def test_whatsapp_pairing_runs_in_the_gateway_container_on_the_session_the_service_uses(single):
    # A QR needs WhatsApp's servers (not reachable here); what compose decides is where `run` pairs: in the
    # gateway's image (neonize loads there) and on the gateway's volume, where the service looks for the session.
    fresh = single.compose("run", "--rm", "-T", "gateway", "whatsapp", "pair", "--phone", "015", check=False)
    assert fresh.returncode == 2 and "starts with 0" in fresh.stdout + fresh.stderr
    single.compose("run", "--rm", "-T", "--entrypoint", "python", "gateway", "-c", SEED_SESSION)
    again = single.compose("run", "--rm", "-T", "gateway", "whatsapp", "pair", check=False)
    assert again.returncode == 2, again.stdout + again.stderr
    said = " ".join((again.stdout + again.stderr).split())  # the console wraps long lines
    assert "already paired (4915100000000.0:1@s.whatsapp.net) in /data/whatsapp/session.sqlite3" in said
    single.compose("run", "--rm", "-T", "--entrypoint", "python", "gateway", "-c", "import neonize.aioze.client")
