"""Failures reach people (issue 13): the router service on a real nats-server turns each failure event into one
short notice in the chat that sent the message, at most one per kind per chat within the interval, and tells the
agent at its next turn which of its messages were not delivered (NanoClaw #2423).

"No second notice" is proven against a later barrier: the router handles its consumer's events in stream order,
so once the effect of an event appended after the suppressed failure is visible, the failure was handled."""

from __future__ import annotations

import asyncio

from events.catalogue.broker import ModelCredentialFailed, ModelRequestRefused
from events.catalogue.chat import MessageDeliveryFailed, MessageReceived, OutboundMessageRequested
from events.catalogue.queue import RunAbandoned
from events.envelope import AggregateRef, new_commit
from events.subjects import EVENT_STREAM
from services.harness.emit import append_emit
from services.harness.service import Emit
from services.router.service import build
from tests.bus import context, events_of, running, settings
from tests.poison import bad_bodies
from tests.router.test_router_service import GROUP, receive, register, turns
from tests.support import eventually, has_at_least

OTHER = "120363999@g.us"  # a second registered group: its notices are the barrier for GROUP's


async def notices(store, chat: str = GROUP) -> list[OutboundMessageRequested]:
    return [o for o in await events_of(store, "OutboundMessageRequested") if o.chat_jid == chat]


async def abandon(store, run_id: str, chat: str = GROUP, folder: str = "family") -> None:
    event = RunAbandoned(chat_jid=chat, group_folder=folder, run_id=run_id, attempts=6,
                         reason="6 failed runs in a row; last: Traceback (most recent call last): sk-ant-SECRET")
    await append_emit(store, Emit.append("default", event), source="queue", msg_id=f"abandon:{run_id}")


async def credential(store, run_id: str, problem: str = "rejected", status: int = 401, folder: str = "family") -> None:
    event = ModelCredentialFailed(run_id=run_id, group_folder=folder, problem=problem, status=status)  # type: ignore[arg-type]
    await append_emit(store, Emit.append(run_id, event), source="broker", msg_id=f"cred:{run_id}")


async def budget(store, run_id: str, folder: str = "family") -> None:
    event = ModelRequestRefused(run_id=run_id, group_folder=folder, reason="budget of $1.00 for group family is spent",
                                spent_usd=1.2, budget_usd=1.0)
    await append_emit(store, Emit.append(folder, event), source="broker", msg_id=f"budget:{run_id}")


async def registered(store) -> None:
    await register(store)
    await register(store, jid=OTHER, folder="other")


async def test_an_abandoned_run_gets_one_short_notice_and_a_second_within_the_interval_gets_none(js_store, nc, tmp_path):
    await registered(js_store)
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await abandon(js_store, "r1")
        await eventually(lambda: has_at_least(notices(js_store), 1))
        await abandon(js_store, "r2")
        await abandon(js_store, "r-other", chat=OTHER, folder="other")  # the barrier
        await eventually(lambda: has_at_least(notices(js_store, OTHER), 1))
    [notice] = await notices(js_store)
    assert notice.text == ("Sorry, I could not answer your last message: the agent failed 6 times in a row. "
                           "I will try again when you send a new message.")
    assert (notice.channel, notice.group_folder, notice.run_id) == ("whatsapp", "family", None)
    assert "sk-ant" not in notice.text and "Traceback" not in notice.text
    recorded = [n for n in await events_of(js_store, "FailureNoticeRequested") if n.chat_jid == GROUP]
    assert [(n.kind, n.request_id) for n in recorded] == [("run_abandoned", f"notice:{recorded[0].cause_event_id}")]


async def test_with_interval_zero_every_failure_gets_its_notice(js_store, nc, tmp_path):
    await registered(js_store)
    async with running(build, context(nc, js_store, settings(tmp_path, router={"failure_notice_interval_s": 0}))):
        await abandon(js_store, "r1")
        await abandon(js_store, "r2")
        await eventually(lambda: has_at_least(notices(js_store), 2))


async def test_a_failure_after_the_interval_gets_a_notice_again(js_store, nc, tmp_path):
    await registered(js_store)
    async with running(build, context(nc, js_store, settings(tmp_path, router={"failure_notice_interval_s": 0.5}))):
        await abandon(js_store, "r1")
        await eventually(lambda: has_at_least(notices(js_store), 1))
        await asyncio.sleep(0.6)  # the interval is measured between the failure events' own times
        await abandon(js_store, "r2")
        await eventually(lambda: has_at_least(notices(js_store), 2))


async def test_a_rejected_credential_says_so_once_and_the_abandonment_it_caused_adds_no_second_notice(js_store, nc, tmp_path):
    await registered(js_store)
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await credential(js_store, "r1", "rejected", 401)
        await abandon(js_store, "r1")  # the queue gives up on the run the credential failed
        await credential(js_store, "r2", "rejected", 401)  # the next message fails the same way
        await abandon(js_store, "r-other", chat=OTHER, folder="other")  # the barrier
        await eventually(lambda: has_at_least(notices(js_store, OTHER), 1))
    [notice] = await notices(js_store)
    assert notice.text == ("I cannot answer right now: the Claude credential was rejected (HTTP 401). "
                           "The owner needs to renew it in credentials.yml.")
    assert "try again" not in notice.text


async def test_a_missing_credential_and_a_spent_budget_each_get_their_own_notice(js_store, nc, tmp_path):
    await registered(js_store)
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await credential(js_store, "r1", "missing", 0)
        await budget(js_store, "r2")
        await budget(js_store, "r3")  # within the interval: no second budget notice
        await abandon(js_store, "r-other", chat=OTHER, folder="other")  # the barrier
        await eventually(lambda: has_at_least(notices(js_store, OTHER), 1))
    assert [n.text for n in await notices(js_store)] == [
        "I cannot answer right now: no Claude credential is configured. The owner needs to add one to credentials.yml.",
        "I cannot answer right now: this group's model budget is used up."]


async def test_failures_of_unregistered_chats_or_folders_notify_nobody(js_store, nc, tmp_path):
    await register(js_store, jid=OTHER, folder="other")
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await abandon(js_store, "r1", chat="999@g.us", folder="nobody")
        await credential(js_store, "r2", folder="nobody")
        await abandon(js_store, "r-other", chat=OTHER, folder="other")  # the barrier
        await eventually(lambda: has_at_least(notices(js_store, OTHER), 1))
    assert [n.chat_jid for n in await events_of(js_store, "OutboundMessageRequested")] == [OTHER]


async def test_a_dead_lettered_inbound_message_is_an_event_and_one_notice_in_its_chat(js_store, nc, tmp_path):
    await registered(js_store)
    good = MessageReceived(channel="whatsapp", chat_jid=GROUP, message_id="like", sender="s", sender_name="Alice",
                           text="hi", timestamp="2026-03-01T10:00:00.000Z", is_group=True)
    body = bad_bodies(new_commit(AggregateRef("chat", "message", f"{GROUP}/like"), [good], version=0, source="gateway"),
                      missing="text")["missing_field"]
    async with running(build, context(nc, js_store, settings(tmp_path))):
        for mid in ("bad1", "bad2"):  # the second, within the interval, gets no notice
            subject = AggregateRef("chat", "message", f"{GROUP}/{mid}").subject("MessageReceived")
            await nc.jetstream().publish(subject, body, stream=EVENT_STREAM)
        await eventually(lambda: has_at_least(events_of(js_store, "MessageDeadLettered"), 2))
        await abandon(js_store, "r-other", chat=OTHER, folder="other")  # the barrier
        await eventually(lambda: has_at_least(notices(js_store, OTHER), 1))
    dead = await events_of(js_store, "MessageDeadLettered")
    assert {d.service for d in dead} == {"router"} and all(GROUP.split("@")[0] in d.subject for d in dead)
    [notice] = await notices(js_store)
    assert notice.text == "Sorry, one of your messages could not be processed and was set aside. Please send it again."


async def test_an_undelivered_agent_message_is_told_to_the_agent_at_its_next_turn_and_only_then(js_store, nc, tmp_path):
    await register(js_store, folder="main", is_main=True)
    request = OutboundMessageRequested(channel="whatsapp", chat_jid=GROUP, text='The shop opens at 9 <b>&</b> "late"',
                                       group_folder="main", run_id="r1")
    await append_emit(js_store, Emit.new("out-1", request), source="router", msg_id="out-1")
    failed = MessageDeliveryFailed(channel="whatsapp", chat_jid=GROUP, reason="whatsapp: not connected", attempts=5,
                                   at="2026-03-01T09:59:00.000Z")
    await append_emit(js_store, Emit.append("out-1", failed), source="gateway", msg_id="out-1-failed")
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await eventually(lambda: has_at_least(events_of(js_store, "UndeliveredReplyNoted"), 1))
        await receive(js_store, "are you there?", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))
        await receive(js_store, "hello?", mid="m2", ts="2026-03-01T10:05:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 2))
    first, second = await turns(js_store)
    head, rest = first.prompt.split('<context timezone="UTC" />', 1)
    lines = head.splitlines()
    assert lines[0].startswith('<undelivered count="1" note="') and lines[-1] == "</undelivered>"
    assert lines[1].startswith('<undelivered_message time="') and 'reason="whatsapp: not connected"' in lines[1]
    assert lines[1].endswith('>The shop opens at 9 &lt;b&gt;&amp;&lt;/b&gt; &quot;late&quot;</undelivered_message>')
    assert "are you there?" in rest and "<undelivered" not in second.prompt
    [told] = await events_of(js_store, "UndeliveredRepliesTold")
    assert told.request_ids == ["out-1"]


async def test_a_failed_notice_is_not_told_to_the_agent_as_its_own_words(js_store, nc, tmp_path):
    await register(js_store, folder="main", is_main=True)
    async with running(build, context(nc, js_store, settings(tmp_path))):
        await abandon(js_store, "r1", folder="main")
        await eventually(lambda: has_at_least(notices(js_store), 1))
        [notice_request] = [n for n in await events_of(js_store, "FailureNoticeRequested")]
        failed = MessageDeliveryFailed(channel="whatsapp", chat_jid=GROUP, reason="not connected", attempts=5,
                                       at="2026-03-01T09:59:00.000Z")
        await append_emit(js_store, Emit.append(notice_request.request_id, failed), source="gateway", msg_id="nf")
        await receive(js_store, "hi", mid="m1", ts="2026-03-01T10:00:00.000Z")
        await eventually(lambda: has_at_least(turns(js_store), 1))
    [turn] = await turns(js_store)
    assert "<undelivered" not in turn.prompt and await events_of(js_store, "UndeliveredReplyNoted") == []
