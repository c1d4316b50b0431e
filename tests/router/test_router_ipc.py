"""The router's IPC tools (``nc.ipc.<folder>.send_message`` / ``register_group``) on a real nats-server with the
real router service: the authorization matrix of NanoClaw v1 (nanoclaw-behaviour §11.2–11.4, ipc-auth.test.ts),
the receipt-carrying answer of ``send_message``, and request idempotency.

Groups as v1's ipc-auth tests: ``main@g.us`` → ``whatsapp_main`` (main), ``other@g.us`` → ``other-group``,
``third@g.us`` → ``third-group``. Identity is the folder token of the subject, never the payload.
"""

from __future__ import annotations

import asyncio
from functools import partial

from events.catalogue.chat import MessageDeliveryFailed, MessageSent
from services.harness.runner import append_emit
from services.harness.service import Emit
from services.router.groups import RegisteredGroup
from services.router.service import build
from tests.bus import ask as bus_ask, context, events_of, refused, refusals_since, repo, running, settings
from tests.support import eventually, has_at_least

MAIN, OTHER, THIRD = "main@g.us", "other@g.us", "third@g.us"
UNREGISTERED = "unknown@g.us"
QUICK = {"send_receipt_timeout_s": 0.3}
"""No gateway runs in most tests: the receipt wait gives up quickly and the answer is "pending"."""
PATIENT = {"send_receipt_timeout_s": 30}
"""For tests that append the receipt themselves: the router waits (bounded) until it appears."""
REQUEST_TIMEOUT = 40.0
"""A bound on any one request (longer than PATIENT's receipt wait), never a speed claim."""


async def register(store, jid, folder, name, *, is_main=False, trigger="@Andy", requires_trigger=True):
    g = RegisteredGroup.register(jid=jid, name=name, folder=folder, trigger=trigger, requires_trigger=requires_trigger,
                                 is_main=is_main, channel="whatsapp", container_config=None,
                                 added_at="2026-01-01T00:00:00.000Z")
    await repo(store).save(g)


async def v1_groups(store):
    await register(store, MAIN, "whatsapp_main", "Main", is_main=True)
    await register(store, OTHER, "other-group", "Other")
    await register(store, THIRD, "third-group", "Third")


def router(nc, store, tmp_path, **router_settings):
    return running(build, context(nc, store, settings(tmp_path, router=router_settings or QUICK)))


ask = partial(bus_ask, timeout=REQUEST_TIMEOUT)
"""A tool call (:func:`tests.bus.ask`) bounded by ``REQUEST_TIMEOUT``."""


async def outbound(store) -> list:
    return await events_of(store, "OutboundMessageRequested")


async def outbound_events(store) -> list:
    """The raw OutboundMessageRequested events (with their aggregate id, the receipt's aggregate)."""
    return [e async for c in store.read() for e in c.events if e.eventtype == "OutboundMessageRequested"]


async def group_events(store, jid) -> list[tuple[str, dict]]:
    return [(e.eventtype, e.data) async for c in store.read() for e in c.events
            if e.aggregatetype == "group" and e.aggregateid == jid]


# --- send_message: who may message which chat (§11.2, §11.4) -------------------------------------------------


async def test_main_may_message_another_registered_chat_and_the_request_is_stored_for_that_chat(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "whatsapp_main", "send_message", {"text": "hello other", "chat_jid": OTHER, "run_id": "r1"})
    assert reply == {"ok": True, "result": {"status": "pending", "chat_jid": OTHER}}
    [req] = await outbound(js_store)
    assert (req.chat_jid, req.text, req.channel, req.group_folder, req.run_id) == (OTHER, "hello other", "whatsapp",
                                                                                  "whatsapp_main", "r1")


async def test_main_may_message_an_unregistered_jid(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "whatsapp_main", "send_message", {"text": "hi stranger", "chat_jid": UNREGISTERED})
    assert reply["ok"] is True and reply["result"]["chat_jid"] == UNREGISTERED
    assert [(r.chat_jid, r.text) for r in await outbound(js_store)] == [(UNREGISTERED, "hi stranger")]


async def test_a_non_main_group_may_message_its_own_chat_named_or_by_default(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        named = await ask(nc, "other-group", "send_message", {"text": "named", "chat_jid": OTHER})
        default = await ask(nc, "other-group", "send_message", {"text": "by default"})
    assert named["ok"] is True and default["ok"] is True
    assert default["result"] == {"status": "pending", "chat_jid": OTHER}
    assert [(r.chat_jid, r.text, r.group_folder) for r in await outbound(js_store)] == [
        (OTHER, "named", "other-group"), (OTHER, "by default", "other-group")]


async def test_a_non_main_group_may_not_message_another_registered_chat_and_only_the_refusal_is_stored(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        before = await js_store.last_seq()
        to_main = await ask(nc, "other-group", "send_message", {"text": "psst", "chat_jid": MAIN})
        to_third = await ask(nc, "other-group", "send_message", {"text": "psst", "chat_jid": THIRD})
        assert [(r.group_folder, r.operation, r.surface) for r in await refusals_since(js_store, before)] == \
            [("other-group", "send_message", "ipc")] * 2
    assert refused(to_main, "other-group", "only the main group")
    assert refused(to_third, "may only send to its own chat")
    assert await outbound(js_store) == []


async def test_a_non_main_group_may_not_message_an_unregistered_jid(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        before = await js_store.last_seq()
        reply = await ask(nc, "third-group", "send_message", {"text": "spam", "chat_jid": UNREGISTERED})
        assert len(await refusals_since(js_store, before)) == 1
    assert refused(reply, "third-group", "may only send to its own chat")


async def test_identity_is_the_subject_folder_not_a_claim_in_the_payload(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "other-group", "send_message", {"text": "I am main", "chat_jid": MAIN, "is_main": True,
                                                              "group_folder": "whatsapp_main", "isMain": True})
    assert refused(reply, "only the main group")
    assert await outbound(js_store) == []


async def test_a_request_from_an_unknown_folder_is_refused(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        send = await ask(nc, "nobody", "send_message", {"text": "hi", "chat_jid": MAIN})
        reg = await ask(nc, "nobody", "register_group", {"jid": "x@g.us", "name": "X", "folder": "x"})
    assert refused(send, "no registered group has folder 'nobody'")
    assert refused(reg, "no registered group has folder 'nobody'")
    assert await outbound(js_store) == [] and await group_events(js_store, "x@g.us") == []


# --- send_message: the text ----------------------------------------------------------------------------------


async def test_internal_blocks_are_stripped_from_the_text_sent(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "other-group", "send_message",
                          {"text": "<internal>plan:\nbe brief</internal>  Done, see you at 5. <internal>x</internal>"})
    assert reply["ok"] is True
    assert [r.text for r in await outbound(js_store)] == ["Done, see you at 5."]


async def test_a_text_that_is_all_internal_is_refused_and_nothing_is_stored(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        before = await js_store.last_seq()
        reply = await ask(nc, "whatsapp_main", "send_message", {"text": " <internal>only notes</internal>\n"})
        assert await js_store.last_seq() == before
    assert refused(reply, "nothing to send", "<internal>")


async def test_an_empty_blank_or_missing_text_is_refused_naming_the_field(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        replies = [await ask(nc, "whatsapp_main", "send_message", body)
                   for body in ({"text": ""}, {"text": "   "}, {"chat_jid": OTHER}, {"text": 42}, {})]
    assert all(refused(r, "'text'") for r in replies), replies
    assert await outbound(js_store) == []


async def test_a_blank_chat_jid_is_refused_naming_the_field(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "whatsapp_main", "send_message", {"text": "hi", "chat_jid": " "})
    assert refused(reply, "'chat_jid'")
    assert await outbound(js_store) == []


# --- malformed requests --------------------------------------------------------------------------------------


async def test_a_body_that_is_not_json_is_refused_naming_the_problem_and_the_router_keeps_serving(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        garbage = await ask(nc, "whatsapp_main", "send_message", raw=b"{not json")
        array = await ask(nc, "whatsapp_main", "register_group", raw=b'["jid", "name"]')
        after = await ask(nc, "whatsapp_main", "send_message", {"text": "still here"})
    assert refused(garbage, "nc.ipc.whatsapp_main.send_message", "not a JSON object")
    assert refused(array, "not a JSON object", "got list")
    assert after == {"ok": True, "result": {"status": "pending", "chat_jid": MAIN}}
    assert [r.text for r in await outbound(js_store)] == ["still here"]


# --- send_message: the answer is the delivery receipt --------------------------------------------------------


async def test_without_a_receipt_the_answer_is_pending_and_the_request_stays_stored_for_the_gateway(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path, send_receipt_timeout_s=0.3):
        reply = await ask(nc, "other-group", "send_message", {"text": "are you there?"})
    assert reply == {"ok": True, "result": {"status": "pending", "chat_jid": OTHER}}
    assert [r.text for r in await outbound(js_store)] == ["are you there?"]


async def _send_with_receipt(js_store, nc, receipt) -> dict:
    """Ask main to message OTHER; once the request is stored, append ``receipt`` (a function of the channel and
    chat) on the same outbound aggregate, as the gateway does; return the tool's answer."""
    answer = asyncio.create_task(ask(nc, "whatsapp_main", "send_message", {"text": "on my way", "chat_jid": OTHER}))
    await eventually(lambda: has_at_least(outbound_events(js_store), 1))
    [requested] = await outbound_events(js_store)
    assert not answer.done()  # the answer waits for the receipt
    await append_emit(js_store, Emit.append(requested.aggregateid, receipt(requested.data["channel"], OTHER)),
                      source="gateway", msg_id="receipt-1")
    return await answer


async def test_the_answer_is_sent_once_the_channel_accepted_the_message(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path, **PATIENT):
        reply = await _send_with_receipt(js_store, nc, lambda channel, chat: MessageSent(
            channel=channel, chat_jid=chat, channel_message_id="WA-1", sent_at="2026-03-01T10:00:00.000Z"))
    assert reply == {"ok": True, "result": {"status": "sent", "chat_jid": OTHER}}


async def test_a_delivery_failure_is_an_error_answer_naming_the_reason(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path, **PATIENT):
        reply = await _send_with_receipt(js_store, nc, lambda channel, chat: MessageDeliveryFailed(
            channel=channel, chat_jid=chat, reason="not-authorized", attempts=5, at="2026-03-01T10:00:00.000Z"))
    assert refused(reply, f"delivery to {OTHER} failed", "not-authorized")
    assert len(await outbound(js_store)) == 1  # the request itself stays stored, with its failure receipt


async def test_a_waiting_send_does_not_hold_up_other_requests(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path, **PATIENT):
        waiting = asyncio.create_task(ask(nc, "whatsapp_main", "send_message", {"text": "first", "chat_jid": OTHER}))
        await eventually(lambda: has_at_least(outbound_events(js_store), 1))
        reg = await ask(nc, "whatsapp_main", "register_group", {"jid": "fourth@g.us", "name": "Fourth", "folder": "fourth"})
        assert reg["ok"] is True and not waiting.done()
        [requested] = await outbound_events(js_store)
        sent = MessageSent(channel="whatsapp", chat_jid=OTHER, channel_message_id="WA-2", sent_at="2026-03-01T10:00:00.000Z")
        await append_emit(js_store, Emit.append(requested.aggregateid, sent), source="gateway", msg_id="receipt-2")
        assert (await waiting)["result"]["status"] == "sent"


# --- register_group (§11.3, ipc-auth register_group) ---------------------------------------------------------


async def test_a_non_main_group_cannot_register_groups_and_only_the_refusal_is_stored(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        before = await js_store.last_seq()
        reply = await ask(nc, "other-group", "register_group",
                          {"jid": "new@g.us", "name": "New", "folder": "new-group", "trigger": "@Andy"})
        [refusal] = await refusals_since(js_store, before)
    assert reply == {"ok": False, "error": "Only the main group can register new groups."}
    assert (refusal.service, refusal.group_folder, refusal.operation, refusal.reason) == \
        ("router", "other-group", "register_group", "Only the main group can register new groups.")


async def test_main_cannot_register_a_folder_that_escapes_the_groups_directory(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        before = await js_store.last_seq()
        reply = await ask(nc, "whatsapp_main", "register_group",
                          {"jid": "new@g.us", "name": "New", "folder": "../../outside", "trigger": "@Andy"})
        assert await js_store.last_seq() == before
    assert refused(reply, "invalid group folder", "../../outside")


async def test_main_registers_a_group_with_its_name_folder_and_trigger_never_as_main(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "whatsapp_main", "register_group",
                          {"jid": "new@g.us", "name": "New Group", "folder": "new-group", "trigger": "@Claw",
                           "is_main": True, "isMain": True})
        # the router knows the new group at once: it may message its own chat and only that
        own = await ask(nc, "new-group", "send_message", {"text": "hello"})
        other = await ask(nc, "new-group", "send_message", {"text": "hello", "chat_jid": OTHER})
    assert reply == {"ok": True, "result": {"status": "registered", "jid": "new@g.us", "folder": "new-group"}}
    [(kind, data)] = await group_events(js_store, "new@g.us")
    assert kind == "GroupRegistered"
    assert (data["name"], data["folder"], data["trigger"], data["requires_trigger"], data["is_main"], data["channel"]) == (
        "New Group", "new-group", "@Claw", True, False, "whatsapp")
    assert own["ok"] is True and refused(other, "only the main group")


async def test_a_missing_trigger_defaults_to_the_assistant_name_and_requires_trigger_can_be_turned_off(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "whatsapp_main", "register_group",
                          {"jid": "new@g.us", "name": "New", "folder": "new-group", "requires_trigger": False})
        bad = await ask(nc, "whatsapp_main", "register_group",
                        {"jid": "bad@g.us", "name": "Bad", "folder": "bad", "requires_trigger": "no"})
    assert reply["ok"] is True
    [(_, data)] = await group_events(js_store, "new@g.us")
    assert (data["trigger"], data["requires_trigger"]) == ("@Andy", False)
    assert refused(bad, "'requires_trigger'") and await group_events(js_store, "bad@g.us") == []


async def test_a_missing_folder_jid_or_name_is_refused_naming_it(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        before = await js_store.last_seq()
        no_folder = await ask(nc, "whatsapp_main", "register_group", {"jid": "new@g.us", "name": "New", "trigger": "@Andy"})
        no_jid = await ask(nc, "whatsapp_main", "register_group", {"name": "New", "folder": "new-group"})
        no_name = await ask(nc, "whatsapp_main", "register_group", {"jid": "new@g.us", "folder": "new-group"})
        blank_folder = await ask(nc, "whatsapp_main", "register_group", {"jid": "new@g.us", "name": "New", "folder": " "})
        assert await js_store.last_seq() == before
    assert refused(no_folder, "'folder'") and refused(no_jid, "'jid'") and refused(no_name, "'name'")
    assert refused(blank_folder, "'folder'")


async def test_re_registering_an_existing_jid_updates_it_and_keeps_it_non_main(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "whatsapp_main", "register_group",
                          {"jid": OTHER, "name": "Other Renamed", "folder": "other-group", "trigger": "@Bot",
                           "requires_trigger": False, "is_main": True})
        # still not main: it may not message another chat
        still_limited = await ask(nc, "other-group", "send_message", {"text": "hi", "chat_jid": THIRD})
    assert reply["ok"] is True
    assert [kind for kind, _ in await group_events(js_store, OTHER)] == ["GroupRegistered", "GroupUpdated"]
    _, update = (await group_events(js_store, OTHER))[1]
    assert (update["name"], update["trigger"], update["requires_trigger"]) == ("Other Renamed", "@Bot", False)
    assert "is_main" not in update
    assert refused(still_limited, "only the main group")


async def test_re_registering_the_main_group_keeps_it_main(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        reply = await ask(nc, "whatsapp_main", "register_group",
                          {"jid": MAIN, "name": "Main again", "folder": "whatsapp_main", "trigger": "@Andy",
                           "is_main": False, "isMain": False})
        # still main: it may message another chat and register groups
        send = await ask(nc, "whatsapp_main", "send_message", {"text": "hi", "chat_jid": OTHER})
        reg = await ask(nc, "whatsapp_main", "register_group", {"jid": "new@g.us", "name": "New", "folder": "new-group"})
    assert reply["ok"] is True and send["ok"] is True and reg["ok"] is True
    assert [kind for kind, _ in await group_events(js_store, MAIN)] == ["GroupRegistered", "GroupUpdated"]
    assert all("is_main" not in data or data["is_main"] is True for _, data in await group_events(js_store, MAIN))


async def test_re_registering_an_existing_jid_under_another_folder_is_refused(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        before = await js_store.last_seq()
        reply = await ask(nc, "whatsapp_main", "register_group", {"jid": OTHER, "name": "Other", "folder": "moved"})
        assert await js_store.last_seq() == before
    assert refused(reply, OTHER, "'other-group'", "cannot change")


async def test_a_folder_already_used_by_another_jid_is_refused(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        before = await js_store.last_seq()
        taken = await ask(nc, "whatsapp_main", "register_group", {"jid": "new@g.us", "name": "New", "folder": "other-group"})
        mains = await ask(nc, "whatsapp_main", "register_group", {"jid": "new@g.us", "name": "New", "folder": "whatsapp_main"})
        assert await js_store.last_seq() == before
    assert refused(taken, "'other-group'", "already used by other@g.us")
    assert refused(mains, "'whatsapp_main'", "already used by main@g.us")


# --- idempotency: a retried tool call (same Nc-Request-Id) is stored once ------------------------------------


async def test_a_register_group_request_repeated_with_the_same_request_id_is_stored_once(js_store, nc, tmp_path):
    await v1_groups(js_store)
    body = {"jid": "new@g.us", "name": "New", "folder": "new-group", "trigger": "@Andy"}
    async with router(nc, js_store, tmp_path):
        first = await ask(nc, "whatsapp_main", "register_group", body, request_id="tool-call-1")
        again = await ask(nc, "whatsapp_main", "register_group", body, request_id="tool-call-1")
    assert first["ok"] is True and again["ok"] is True
    assert [kind for kind, _ in await group_events(js_store, "new@g.us")] == ["GroupRegistered"]


async def test_a_send_message_request_repeated_with_the_same_request_id_is_stored_once(js_store, nc, tmp_path):
    await v1_groups(js_store)
    body = {"text": "only once", "chat_jid": OTHER}
    async with router(nc, js_store, tmp_path):
        first = await ask(nc, "whatsapp_main", "send_message", body, request_id="tool-call-2")
        again = await ask(nc, "whatsapp_main", "send_message", body, request_id="tool-call-2")
    assert first == again == {"ok": True, "result": {"status": "pending", "chat_jid": OTHER}}
    assert [r.text for r in await outbound(js_store)] == ["only once"]


async def test_different_request_ids_are_different_messages(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        for rid in ("tool-call-3", "tool-call-4"):
            assert (await ask(nc, "other-group", "send_message", {"text": "twice"}, request_id=rid))["ok"] is True
    assert [r.text for r in await outbound(js_store)] == ["twice", "twice"]


async def test_the_same_request_id_from_another_folder_or_for_another_tool_is_another_request(js_store, nc, tmp_path):
    await v1_groups(js_store)
    async with router(nc, js_store, tmp_path):
        sent = await ask(nc, "whatsapp_main", "send_message", {"text": "from main", "chat_jid": OTHER}, request_id="same")
        registered = await ask(nc, "whatsapp_main", "register_group", {"jid": "new@g.us", "name": "New", "folder": "new-group"},
                               request_id="same")
        own = await ask(nc, "third-group", "send_message", {"text": "from third"}, request_id="same")
    assert sent["ok"] is True and registered["ok"] is True
    assert own == {"ok": True, "result": {"status": "pending", "chat_jid": THIRD}}
    assert [kind for kind, _ in await group_events(js_store, "new@g.us")] == ["GroupRegistered"]
    assert [(r.chat_jid, r.text, r.group_folder) for r in await outbound(js_store)] == [
        (OTHER, "from main", "whatsapp_main"), (THIRD, "from third", "third-group")]
