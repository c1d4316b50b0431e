"""The ``nc`` MCP tools end to end: the stub model calls a tool, the agent makes a NATS request, a test
responder answers, and the tool result the model gets back is checked in the stub's next recorded request."""

from __future__ import annotations

import json

import nats
import pytest

from services.harness.natsserver import EmbeddedNats
from tests.sandbox import AgentProcess, Workspace, agent_input, tool_results
from tests.stub_anthropic import StubAnthropic


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


async def run_tool_call(nats_url: str, bus, ws: Workspace, tool: str, args: dict, **env: str) -> dict:
    """Run until the first idle with one tool call scripted; returns the tool_result block the model got."""
    with StubAnthropic(steps=[("tool_use", f"mcp__nc__{tool}", args), ("text", "done")]) as stub:
        inp = agent_input(nats_url, stub.url)
        agent = await AgentProcess.start(inp, ws, **env)
        try:
            assert (await agent.next_marker())["result"] == "done", agent.stderr()
            assert (await agent.next_marker())["result"] is None
            reply = await bus.request(inp["nats"]["input_subject"], b'{"type": "close"}', timeout=10)
            assert json.loads(reply.data) == {"ok": True}
            assert await agent.wait() == 0
        finally:
            agent.kill()
    [result] = tool_results(stub.message_requests[1].body)
    return result


def text_of(result: dict) -> str:
    content = result["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


@pytest.fixture
async def bus(nats_server):
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


def responder(seen: list, reply: dict):
    async def handle(msg):
        seen.append((msg.subject, json.loads(msg.data)))
        await msg.respond(json.dumps(reply).encode())
    return handle


async def test_send_message_is_a_request_to_the_router_and_its_result_goes_back(nats_server, bus, ws):
    seen: list = []
    await bus.subscribe("nc.ipc.grp.>", cb=responder(seen, {"ok": True, "result": "Message sent."}))
    result = await run_tool_call(nats_server.url, bus, ws, "send_message", {"text": "on my way"})
    assert seen == [("nc.ipc.grp.send_message", {"text": "on my way"})]
    assert text_of(result) == "Message sent." and not result.get("is_error")


async def test_a_refusal_is_an_error_result_carrying_the_reason(nats_server, bus, ws):
    seen: list = []
    await bus.subscribe("nc.ipc.grp.>", cb=responder(
        seen, {"ok": False, "error": "Only the main group can send to other chats."}))
    result = await run_tool_call(nats_server.url, bus, ws, "send_message", {"text": "hi", "chat_jid": "other@g.us"})
    assert seen == [("nc.ipc.grp.send_message", {"text": "hi", "chat_jid": "other@g.us"})]
    assert result["is_error"] is True
    assert "Only the main group can send to other chats." in text_of(result)


async def test_schedule_task_forwards_its_arguments_as_given_leaving_defaults_to_the_scheduler(nats_server, bus, ws):
    seen: list = []
    scheduled = "Task t-1 scheduled: cron - 0 9 * * *"
    await bus.subscribe("nc.ipc.grp.>", cb=responder(seen, {"ok": True, "result": scheduled}))
    args = {"prompt": "morning digest", "schedule_type": "cron", "schedule_value": "0 9 * * *"}
    result = await run_tool_call(nats_server.url, bus, ws, "schedule_task", args)
    assert seen == [("nc.ipc.grp.schedule_task", args)]
    assert text_of(result) == scheduled


async def test_without_a_scheduler_the_tool_says_so(nats_server, bus, ws):
    args = {"prompt": "p", "schedule_type": "interval", "schedule_value": "60000"}
    result = await run_tool_call(nats_server.url, bus, ws, "schedule_task", args)
    assert result["is_error"] is True and text_of(result) == "scheduler not available"


async def test_a_service_that_never_answers_is_an_error_not_a_success(nats_server, bus, ws):
    async def silent(msg):
        pass

    await bus.subscribe("nc.ipc.grp.>", cb=silent)
    result = await run_tool_call(nats_server.url, bus, ws, "list_tasks", {}, NANOCLAW_IPC_TIMEOUT_S="1")
    assert result["is_error"] is True
    assert text_of(result).startswith("scheduler did not answer within 1 s")


RUN_USERS = """
authorization {
  users = [
    {user: svc, password: svc-pass}
    {user: "run-r1", password: "secret", permissions: {
      publish: {allow: ["nc.ipc.grp.>"]}
      subscribe: {allow: ["nc.run.grp.r1.>", "_INBOX_r1.>"]}
      allow_responses: true
    }}
  ]
}
"""


async def test_the_agent_works_within_the_per_run_permissions(tmp_path, ws):
    """The run's user may publish only nc.ipc.<folder>.> and subscribe only to its input subject and its own
    inbox prefix (docs/agent-runs.md): requests and replies must still work."""
    server = EmbeddedNats(tmp_path / "nats-auth", sync_always=False, extra_conf=RUN_USERS).start()
    try:
        bus = await nats.connect(server.url, user="svc", password="svc-pass")
        seen: list = []
        await bus.subscribe("nc.ipc.grp.>", cb=responder(seen, {"ok": True, "result": "Message sent."}))
        result = await run_tool_call(server.url, bus, ws, "send_message", {"text": "allowed"})
        assert seen == [("nc.ipc.grp.send_message", {"text": "allowed"})]
        assert text_of(result) == "Message sent."
        await bus.close()
    finally:
        server.stop()
