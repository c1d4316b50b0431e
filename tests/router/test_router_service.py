"""The router service on a real nats-server: registered groups, trigger gate, prompts, cursor, outputs."""

from __future__ import annotations

import asyncio

import pytest

from events.catalogue.agent import AgentOutputProduced, AgentRunFinished, AgentRunStarted
from events.catalogue.chat import MessageReceived
from services.harness.service import Emit
from services.harness.runner import append_emit
from services.router.groups import RegisteredGroup
from services.router.service import build
from tests.bus import context, events_of, repo, running, settings
from tests.support import eventually, has_at_least

GROUP = "120363001@g.us"


async def register(store, jid=GROUP, folder="family", trigger="@Andy", requires_trigger=True, is_main=False):
    g = RegisteredGroup.register(jid=jid, name=folder.title(), folder=folder, trigger=trigger, requires_trigger=requires_trigger,
                                 is_main=is_main, channel="whatsapp", container_config=None, added_at="2026-01-01T00:00:00.000Z")
    await repo(store).save(g)


async def receive(store, text, *, mid, ts, chat=GROUP, sender="4915550001@s.whatsapp.net", name="Alice", **extra):
    msg = MessageReceived(channel="whatsapp", chat_jid=chat, message_id=mid, sender=sender, sender_name=name, text=text,
                          timestamp=ts, is_group=True, **extra)
    return await append_emit(store, Emit.new(f"{chat}/{mid}", msg, msg_id=f"whatsapp:{mid}"), source="gateway", msg_id=mid)


async def turns(store):
    return await events_of(store, "AgentTurnRequested")


async def test_a_triggered_message_becomes_a_turn_request_with_the_pending_messages_as_context(js_store, nc, tmp_path):
    await register(js_store)
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await receive(js_store, "did anyone feed the cat?", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await receive(js_store, "@Andy what do you think?", mid="m2", ts="2026-03-01T10:01:00.000Z", name="Bob")
        await eventually(lambda: has_at_least(turns(js_store), 1))
        turn = (await turns(js_store))[0]
    assert turn.message_ids == ["m1", "m2"] and turn.group_folder == "family" and turn.channel == "whatsapp"
    assert turn.previous_cursor == "" and turn.cursor == "2026-03-01T10:01:00.000Z"
    assert turn.prompt == ('<context timezone="UTC" />\n<messages>\n'
                           '<message sender="Alice" time="Mar 1, 2026, 10:00 AM">did anyone feed the cat?</message>\n'
                           '<message sender="Bob" time="Mar 1, 2026, 10:01 AM">@Andy what do you think?</message>\n'
                           '</messages>')


async def test_messages_without_the_trigger_or_in_unregistered_chats_request_nothing(js_store, nc, tmp_path):
    await register(js_store)
    async with running(build, context(nc, js_store, settings(tmp_path))) as runner:
        await receive(js_store, "hello there", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await receive(js_store, "@Andy hi", mid="m2", ts="2026-03-01T10:00:01.000Z", chat="999@g.us")
        await receive(js_store, "@Andyextra no word boundary", mid="m3", ts="2026-03-01T10:00:02.000Z")
        await eventually(lambda: _settled(runner))
    assert await turns(js_store) == []


async def test_the_per_group_trigger_replaces_the_default(js_store, nc, tmp_path):
    await register(js_store, trigger="@Claw")
    async with running(build, context(nc, js_store, settings(tmp_path))) as runner:
        await receive(js_store, "@Andy hi", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await eventually(lambda: _settled(runner))
        assert await turns(js_store) == []
        await receive(js_store, "@claw hi", mid="m2", ts="2026-03-01T10:00:01.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))


async def test_the_main_group_needs_no_trigger_and_the_cursor_advances_turn_by_turn(js_store, nc, tmp_path):
    await register(js_store, folder="main", is_main=True)
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await receive(js_store, "first", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))
        await receive(js_store, "second", mid="m2", ts="2026-03-01T10:05:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 2))
    first, second = await turns(js_store)
    assert first.message_ids == ["m1"] and second.message_ids == ["m2"]
    assert second.previous_cursor == first.cursor
    assert (first.seq, second.seq) == (1, 2)  # the chat's turn order, which the queue keeps


async def test_a_redelivered_whatsapp_message_is_one_event_and_one_turn(js_store, nc, tmp_path):
    await register(js_store, folder="main", is_main=True)
    async with running(build, context(nc, js_store, settings(tmp_path))) as runner:
        a = await receive(js_store, "hello", mid="WA1", ts="2026-03-01T10:00:00.000Z")
        b = await receive(js_store, "hello", mid="WA1", ts="2026-03-01T10:00:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))
        await eventually(lambda: _settled(runner))
    assert b.duplicate and a.seq == b.seq and len(await turns(js_store)) == 1


async def test_more_pending_messages_than_the_cap_go_to_the_model_in_consecutive_turns_none_cut(js_store, nc, tmp_path):
    await register(js_store)
    s = settings(tmp_path, router={"max_messages_per_prompt": 3})
    async with running(build, context(nc, js_store, s)):
        for i in range(5):
            await receive(js_store, f"note {i}", mid=f"m{i}", ts=f"2026-03-01T10:0{i}:00.000Z")
        await receive(js_store, "@Andy summarise", mid="m9", ts="2026-03-01T10:09:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 2))
    first, second = await turns(js_store)
    assert first.message_ids == ["m0", "m1", "m2"] and second.message_ids == ["m3", "m4", "m9"]
    assert first.cursor == "2026-03-01T10:02:00.000Z" and second.previous_cursor == first.cursor
    assert (first.omitted, second.omitted, first.batch_limit) == (0, 0, 3)
    assert (first.seq, second.seq) == (1, 2)  # turns of one commit are numbered in order too
    assert "omitted_messages" not in first.prompt + second.prompt and first.prompt.count("<message ") == 3


async def test_a_burst_sharing_one_timestamp_is_split_into_turns_without_skipping_any_message(js_store, nc, tmp_path):
    await register(js_store, folder="main", is_main=True)
    s = settings(tmp_path, router={"max_messages_per_prompt": 3})
    same = "2026-03-01T10:00:00.000Z"  # WhatsApp gives seconds: a burst shares its timestamp
    async with running(build, context(nc, js_store, s)) as runner:
        for i in range(7):
            await receive(js_store, f"burst {i}", mid=f"b{i}", ts=same)
        await eventually(lambda: has_at_least(turns(js_store), 1))
        await eventually(lambda: _settled(runner))
        await receive(js_store, "one more", mid="b7", ts=same)
        await eventually(lambda: _has_message(js_store, "b7"))
    given = [t.message_ids for t in await turns(js_store)]
    flat = [m for ids in given for m in ids]
    assert flat == [f"b{i}" for i in range(8)]  # each exactly once, in arrival order
    assert all(len(ids) <= 3 for ids in given)
    assert (await turns(js_store))[-1].cursor_ids[-1] == "b7"


async def _has_message(store, mid: str) -> bool:
    return any(mid in t.message_ids for t in await turns(store))


async def test_a_message_while_a_run_is_active_is_a_new_turn_for_the_queue_never_piped_by_the_router(js_store, nc, tmp_path):
    await register(js_store, folder="main", is_main=True)
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await receive(js_store, "start", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))
        turn = (await turns(js_store))[0]
        started = AgentRunStarted(run_id="r1", chat_jid=GROUP, group_folder="main", kind="message", turn_id=turn.turn_id)
        await append_emit(js_store, Emit.new("r1", started), source="runner", msg_id="r1-start")
        await receive(js_store, "and another thing", mid="m2", ts="2026-03-01T10:01:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 2))
    assert (await turns(js_store))[1].message_ids == ["m2"]
    assert await events_of(js_store, "AgentInputAppended") == []  # the queue decides where a turn goes


async def test_agent_output_is_stripped_of_internal_blocks_and_sent_back_on_the_chat_channel(js_store, nc, tmp_path):
    await register(js_store)
    async with running(build, context(nc, js_store, settings(tmp_path))) as runner:
        await receive(js_store, "@Andy hi", mid="m1", ts="2026-03-01T10:00:00.000Z")
        for i, text in enumerate(["<internal>thinking\nhard</internal>Hello!", "<internal>only internal</internal>"]):
            out = AgentOutputProduced(run_id="r1", chat_jid=GROUP, group_folder="family", text=text)
            await append_emit(js_store, Emit.append("r1", out), source="runner", msg_id=f"out{i}")
        await eventually(lambda: has_at_least(events_of(js_store, "OutboundMessageRequested"), 1))
        await eventually(lambda: _settled(runner))
    [request] = await events_of(js_store, "OutboundMessageRequested")
    assert (request.text, request.channel, request.chat_jid, request.run_id) == ("Hello!", "whatsapp", GROUP, "r1")


async def test_a_failed_run_leaves_the_cursor_alone_because_the_queue_retries_its_turn(js_store, nc, tmp_path):
    await register(js_store, folder="main", is_main=True)
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await receive(js_store, "do it", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))
        turn = (await turns(js_store))[0]
        await append_emit(js_store, Emit.new("r1", AgentRunStarted(run_id="r1", chat_jid=GROUP, group_folder="main",
                                                                   turn_id=turn.turn_id)), source="runner", msg_id="s")
        fin = AgentRunFinished(run_id="r1", chat_jid=GROUP, group_folder="main", status="failed", error="container died")
        await append_emit(js_store, Emit.append("r1", fin), source="runner", msg_id="f1")
        await receive(js_store, "again", mid="m2", ts="2026-03-01T10:02:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 2))
    # m1 stays with its turn (the queue's retry); the model is never given m1 a second time by the router
    assert (await turns(js_store))[1].message_ids == ["m2"]
    assert await events_of(js_store, "AgentCursorRolledBack") == []


async def test_a_failed_run_that_already_delivered_output_keeps_the_cursor(js_store, nc, tmp_path):
    await register(js_store, folder="main", is_main=True)
    async with running(build, context(nc, js_store, settings(tmp_path))) as runner:
        await receive(js_store, "do it", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))
        fin = AgentRunFinished(run_id="r1", chat_jid=GROUP, group_folder="main", status="failed", output_delivered=True)
        await append_emit(js_store, Emit.new("r1", fin), source="runner", msg_id="f1")
        await eventually(lambda: _settled(runner))
    assert await events_of(js_store, "AgentCursorRolledBack") == []


async def test_start_up_recovery_requests_turns_for_triggered_messages_received_while_the_router_was_down(js_store, nc, tmp_path):
    await register(js_store)
    await receive(js_store, "context", mid="m1", ts="2026-03-01T10:00:00.000Z")
    await receive(js_store, "@Andy are you there?", mid="m2", ts="2026-03-01T10:01:00.000Z")
    s = settings(tmp_path)
    async with running(build, context(nc, js_store, s)):
        await eventually(lambda: has_at_least(turns(js_store), 1))
    async with running(build, context(nc, js_store, s)) as runner:  # a restart without news
        await eventually(lambda: _settled(runner))
    assert [t.message_ids for t in await turns(js_store)] == [["m1", "m2"]]


async def test_a_sender_in_drop_mode_is_ignored_and_an_unlisted_sender_cannot_trigger(js_store, nc, tmp_path):
    allow = tmp_path / "allow.json"
    allow.write_text('{"default": {"allow": "*", "mode": "trigger"}, "chats": {"%s": {"allow": ["4915550001@s.whatsapp.net"], "mode": "trigger"}}}' % GROUP)
    await register(js_store)
    s = settings(tmp_path, router={"sender_allowlist": str(allow)})
    async with running(build, context(nc, js_store, s)) as runner:
        await receive(js_store, "@Andy from a stranger", mid="m1", ts="2026-03-01T10:00:00.000Z", sender="111@s.whatsapp.net")
        await eventually(lambda: _settled(runner))
        assert await turns(js_store) == []
        await receive(js_store, "@Andy from Alice", mid="m2", ts="2026-03-01T10:01:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))
    assert (await turns(js_store))[0].message_ids == ["m1", "m2"]  # the stranger's words stay as context



async def _settled(runner) -> bool:
    info = await runner.nc.jetstream().consumer_info("NC_EVENTS", "svc_router")
    return info.num_pending == 0 and info.num_ack_pending == 0
