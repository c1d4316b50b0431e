"""The `single` compose profile on the real engine: images built here, one NATS node with the generated
identities and encryption at rest, the services each in its own container.

Covered: webhook message → MessageReceived → AgentTurnRequested → RunQueued/RunDispatched, a SIGKILLed router
container mid-turn (the turn is requested and dispatched exactly once after its restart), and
`nanoclaw audit verify` clean inside the projections container. Not covered: the run itself and the reply;
the runner is not containerised yet (docs/deploy.md, "What is not containerised yet")."""

from __future__ import annotations

import pytest

from tests.deploy.compose import Deployment, count, wait_events

pytestmark = [pytest.mark.docker, pytest.mark.deploy, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("single"), "single")
    try:
        deployment.up()
        yield deployment
    finally:
        deployment.down()


def _add_group(deployment: Deployment, folder: str) -> None:
    result = deployment.admin("groups", "add", f"http:{folder}", "--name", folder.title(), "--folder", folder,
                              "--no-trigger")
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_webhook_message_becomes_a_dispatched_run_and_the_audit_is_clean(single):
    _add_group(single, "support")
    single.post("support", "hello from the webhook")
    seen = await wait_events(single, lambda s: count(s, "RunDispatched", "support") >= 1)
    assert count(seen, "AgentTurnRequested", "support") == 1
    assert any(t == "MessageReceived" and "hello from the webhook" in str(d) for t, d in seen)
    # The store is encrypted at rest: the message text is not in the NATS volume's files.
    probe = single.compose("exec", "-T", "nats", "grep", "-rl", "hello from the webhook", "/data", check=False)
    assert probe.returncode == 1 and not probe.stdout, probe.stdout
    verify = single.compose("exec", "-T", "projections", "nanoclaw", "audit", "verify", check=False, timeout=180)
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_a_router_killed_mid_turn_completes_the_turn_once_after_restart(single):
    _add_group(single, "crash")
    router = single.container("router")
    single.post("crash", "survive a crash")
    router.kill(signal="SIGKILL")
    single.compose("up", "-d", "router")  # the restart policy's job, done at once
    single.wait_healthy(["router"])
    seen = await wait_events(single, lambda s: count(s, "RunDispatched", "crash") >= 1)
    assert count(seen, "AgentTurnRequested", "crash") == 1
    assert count(seen, "RunDispatched", "crash") == 1
    received = [d for t, d in seen if t == "MessageReceived" and "survive a crash" in str(d)]
    assert len(received) == 1
