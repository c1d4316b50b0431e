"""Conversation integrity end to end (issue 13), on the real services over a real nats-server, the process sandbox
backend, the real claude-agent-sdk CLI and a stub Messages API: the model sees every accepted message exactly once
and in arrival order, a burst into a starting run is held (never bounced) and answered with no idle-timeout wait,
and a large burst into an idle live run reaches the model whole, in batches of at most
``router.max_messages_per_prompt``.

What the model saw is read from the stub: the last model request carries the session's whole history, one user
turn per query, so each message's text is counted across the user turns."""

from __future__ import annotations

import asyncio
import re
import time

from tests.agent_path import http_port, system
from tests.bus import events_of
from tests.gateway.test_gateway_service import get, post
from tests.router.test_router_service import register
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually

IDLE_TIMEOUT_MS = 600_000  # ten minutes: any wait on the idle timeout misses the deadlines below
_MESSAGE = re.compile(r'<message sender="[^"]*" time="[^"]*">([^<]*)</message>')


def user_turns(stub: StubAnthropic) -> list[list[str]]:
    """The message texts of each user turn of the newest model request (the session's history), oldest first."""
    last = stub.message_requests[-1].body["messages"]
    turns = []
    for m in last:
        if m["role"] != "user":
            continue
        content = m["content"]
        text = content if isinstance(content, str) else "\n".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
        found = _MESSAGE.findall(text)
        if found:
            turns.append(found)
    return turns


async def reply_count(port: int, chat: str) -> int:
    return len((await get(port, chat, wait=1))["messages"])


async def test_a_burst_into_a_starting_run_is_held_and_every_message_answered_once_in_order_without_an_idle_wait(
        tmp_path):
    with StubAnthropic(script=lambda body: ("text", "noted")) as stub:
        async with system(tmp_path, stub, queue={"idle_timeout_ms": IDLE_TIMEOUT_MS}) as (host, store, _):
            await register(store, jid="http:burst", folder="burst", requires_trigger=False)
            port = http_port(host)
            started = time.monotonic()
            for i in range(4):  # the reproduction: 0.3–0.4 s apart, no live agent
                status, _ = await post(port, {"chat": "burst", "sender": "eve", "text": f"burst {i}"})
                assert status == 202
                await asyncio.sleep(0.3 + 0.1 * (i % 2))

            async def all_seen() -> bool:
                return bool(stub.message_requests) and [t for turn in user_turns(stub) for t in turn] == [
                    f"burst {i}" for i in range(4)]

            await eventually(all_seen, timeout=90)
            await eventually(lambda: _at_least(reply_count(port, "burst"), 2), timeout=30)
            elapsed = time.monotonic() - started
            assert await events_of(store, "AgentInputRejected") == []  # nothing bounced
            assert await events_of(store, "AgentInputReturned") == []
            assert len(await events_of(store, "RunDispatched")) == 1  # one run took the whole burst
            assert await events_of(store, "RunCloseRequested") == []  # ... and is still open, idle
        assert elapsed < 60  # answered in agent time; an idle-timeout wait would take ten minutes
        seen = [t for turn in user_turns(stub) for t in turn]
        assert seen == ["burst 0", "burst 1", "burst 2", "burst 3"]  # each exactly once, in order


async def test_a_150_message_burst_into_an_idle_live_run_reaches_the_model_whole_in_order_in_capped_batches(tmp_path):
    cap = 10
    with StubAnthropic(script=lambda body: ("text", "noted")) as stub:
        async with system(tmp_path, stub, queue={"idle_timeout_ms": IDLE_TIMEOUT_MS},
                          router={"max_messages_per_prompt": cap}) as (host, store, _):
            await register(store, jid="http:big", folder="big", requires_trigger=False)
            port = http_port(host)
            assert (await post(port, {"chat": "big", "sender": "eve", "text": "warm up"}))[0] == 202
            await eventually(lambda: _at_least(reply_count(port, "big"), 1), timeout=90)
            await eventually(lambda: _at_least(_count(events_of(store, "RunIdled")), 1))  # a live, idle run

            for i in range(150):
                assert (await post(port, {"chat": "big", "sender": "eve", "text": f"n{i:03d}"}))[0] == 202

            async def all_seen() -> bool:
                return len([t for turn in user_turns(stub) for t in turn]) >= 151

            await eventually(all_seen, timeout=240)
            assert len(await events_of(store, "RunDispatched")) == 1  # the live run took every batch
            assert all(t.omitted == 0 for t in await events_of(store, "AgentTurnRequested"))
        turns = user_turns(stub)
        seen = [t for turn in turns for t in turn]
        assert seen == ["warm up"] + [f"n{i:03d}" for i in range(150)]  # none cut, none twice, in order
        assert all(len(turn) <= cap for turn in turns), [len(t) for t in turns]


async def _at_least(value, n: int) -> bool:
    return (await value) >= n


async def _count(events) -> int:
    return len(await events)


async def test_a_group_waiting_for_the_only_slot_closes_another_groups_idle_run_at_once(tmp_path):
    with StubAnthropic(script=lambda body: ("text", "noted")) as stub:
        async with system(tmp_path, stub, queue={"idle_timeout_ms": IDLE_TIMEOUT_MS, "max_concurrent": 1}) as (
                host, store, _):
            await register(store, jid="http:first", folder="first", requires_trigger=False)
            await register(store, jid="http:second", folder="second", requires_trigger=False)
            port = http_port(host)
            assert (await post(port, {"chat": "first", "sender": "eve", "text": "hello"}))[0] == 202
            await eventually(lambda: _at_least(reply_count(port, "first"), 1), timeout=90)
            await eventually(lambda: _at_least(_count(events_of(store, "RunIdled")), 1))  # first idles, holding the slot
            started = time.monotonic()
            assert (await post(port, {"chat": "second", "sender": "bob", "text": "anyone?"}))[0] == 202
            await eventually(lambda: _at_least(reply_count(port, "second"), 1), timeout=90)
            elapsed = time.monotonic() - started
            closes = [(c.chat_jid, c.reason) for c in await events_of(store, "RunCloseRequested")]
        assert closes == [("http:first", "slot_wanted")]
        assert elapsed < 60  # the idle run was closed for the waiting group, not after its ten-minute idle timeout
