"""The `cluster` compose profile on the real engine: three NATS nodes, streams at R3, every service and every
sandbox given all three URLs. One node is stopped during traffic: messages are still accepted and answered by
the agent; restarted, the node catches up with the stream (its own replica reaches the leader's last sequence)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.deploy.compose import Deployment, count, events
from tests.stub_anthropic import StubAnthropic

pytestmark = [pytest.mark.docker, pytest.mark.deploy, pytest.mark.timeout(900)]

STREAM_STATE = ("exec 3<>/dev/tcp/127.0.0.1/8222 && "
                "printf 'GET /jsz?accounts=true&streams=true HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3")


def replica_last_seq(deployment: Deployment, node: str) -> int:
    """NC_EVENTS's last sequence in ``node``'s own replica (its monitoring endpoint, read from inside the
    container: only nats-1's client port is published)."""
    container = deployment.container(node)
    code, output = container.exec_run(["bash", "-c", STREAM_STATE])
    body = output.decode(errors="replace").split("\r\n\r\n", 1)[-1]
    try:
        data = json.loads(body)
    except ValueError:
        raise AssertionError(f"{node}: no /jsz answer (exit {code}): {body[:500]}") from None
    for account in data.get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] == "NC_EVENTS":
                return stream["state"]["last_seq"]
    raise AssertionError(f"{node}: NC_EVENTS not in /jsz: {body[:1500]}")


async def test_one_node_down_the_system_keeps_answering_and_the_node_catches_up(tmp_path):
    with StubAnthropic(host="0.0.0.0", script=lambda body: ("text", "answered by the cluster")) as model:
        cluster = Deployment(tmp_path / "cluster", "cluster", model_port=model.port)
        try:
            cluster.up()
            for folder in ("before", "during"):
                cluster.add_group(folder)
            cluster.post("before", "first message")
            assert await cluster.wait_replies("before", 1, timeout=240) == ["answered by the cluster"]

            cluster.compose("stop", "-t", "5", "nats-2")  # nats-1 keeps the published port for this test's reads
            cluster.post("during", "while a node is down")
            assert await cluster.wait_replies("during", 1, timeout=240) == ["answered by the cluster"]
            assert count(await events(cluster), "AgentTurnRequested", "during") == 1

            cluster.compose("start", "nats-2")
            cluster.wait_healthy(["nats-2"])
            leader_seq = replica_last_seq(cluster, "nats-1")
            assert leader_seq > 0
            for _ in range(120):
                if replica_last_seq(cluster, "nats-2") >= leader_seq:
                    break
                await asyncio.sleep(1)
            assert replica_last_seq(cluster, "nats-2") >= leader_seq
        finally:
            cluster.down()
