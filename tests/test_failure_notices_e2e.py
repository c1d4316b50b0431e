"""Failures reach people, end to end (issue 13): the whole system as `nanoclaw up` runs it (process sandbox, the
real Claude CLI through the model proxy to tests/stub_anthropic.py), a message posted to the webhook, and the
notice read back from the chat like any reply.

"No second notice" is proven against a barrier: a message to a second chat, posted once the second failure is in
the log, is answered; the router handles events in log order, so it had handled the failure by then."""

from __future__ import annotations

from typing import Any

from tests.agent_path import http_port, system
from tests.bus import events_of
from tests.gateway.test_gateway_service import get, post
from tests.router.test_router_service import register
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually, has_at_least


def answers(failing_text: str, failure: tuple):
    """The stub's script: ``failure`` for a conversation that mentions ``failing_text``, else ``("text", "ok")``."""
    def script(body: dict[str, Any]):
        return failure if failing_text in str(body.get("messages")) else ("text", "ok")
    return script


async def chat(port: int, name: str, n: int) -> list[str]:
    texts: list[str] = []

    async def enough() -> bool:
        texts[:] = [m["text"] for m in (await get(port, name, wait=2))["messages"]]
        return len(texts) >= n
    await eventually(enough, timeout=60)
    return texts


async def test_a_rejected_credential_is_told_once_in_the_chat_and_the_run_is_not_retried(tmp_path):
    with StubAnthropic(script=answers("kitchen", ("error", 401, "authentication_error", "invalid x-api-key"))) as stub:
        async with system(tmp_path, stub) as (host, store, _):
            port = http_port(host)
            await register(store, jid="http:home", folder="home", requires_trigger=False)
            await register(store, jid="http:work", folder="work", requires_trigger=False)
            assert (await post(port, {"chat": "home", "sender": "eve", "text": "is the kitchen light on?"}))[0] == 202
            [notice] = await chat(port, "home", 1)
            assert notice == ("I cannot answer right now: the Claude credential was rejected (HTTP 401). "
                              "The owner needs to renew it in credentials.yml.")
            await eventually(lambda: has_at_least(events_of(store, "RunAbandoned"), 1), timeout=30)
            [abandoned] = await events_of(store, "RunAbandoned")
            assert abandoned.attempts == 1 and "credential rejected (HTTP 401)" in abandoned.reason
            assert (await post(port, {"chat": "home", "sender": "eve", "text": "kitchen, please?"}))[0] == 202
            await eventually(lambda: has_at_least(events_of(store, "RunAbandoned"), 2), timeout=60)
            assert (await post(port, {"chat": "work", "sender": "eve", "text": "hello"}))[0] == 202
            assert await chat(port, "work", 1) == ["ok"]  # the barrier
            home = [o for o in await events_of(store, "OutboundMessageRequested") if o.chat_jid == "http:home"]
            failed = await events_of(store, "ModelCredentialFailed")
            retries = await events_of(store, "RunRetryScheduled")
    assert len(home) == 1 and [f.problem for f in failed] == ["rejected", "rejected"] and retries == []
    assert len(stub.message_requests) == 3  # one call per failed run (no CLI retries), one for the barrier


async def test_a_spent_budget_is_told_once_in_the_chat(tmp_path):
    with StubAnthropic() as stub:
        async with system(tmp_path, stub, proxy={"budgets_usd": {"home": 0}}, queue={"base_retry_ms": 200}) as (host, store, _):
            port = http_port(host)
            await register(store, jid="http:home", folder="home", requires_trigger=False)
            await register(store, jid="http:work", folder="work", requires_trigger=False)
            assert (await post(port, {"chat": "home", "sender": "eve", "text": "what's on today?"}))[0] == 202
            assert await chat(port, "home", 1) == ["I cannot answer right now: this group's model budget is used up."]
            # the queue retries (the budget may be raised meanwhile): each retry is refused again, without a notice
            await eventually(lambda: has_at_least(events_of(store, "ModelRequestRefused"), 3), timeout=60)
            assert (await post(port, {"chat": "work", "sender": "eve", "text": "hello"}))[0] == 202
            assert await chat(port, "work", 1) == ["ok"]  # the barrier
            home = [o for o in await events_of(store, "OutboundMessageRequested") if o.chat_jid == "http:home"]
    assert len(home) == 1 and stub.message_requests and all(
        "what's on today" not in str(r.body) for r in stub.message_requests)
