"""Older logs still replay (issue 13 changed who decides what, not what was recorded): a conversation with the
router's own piping and roll-backs, and a queue with pipes and idles recorded before the queue owned the run
lifecycle, load into the current aggregates with the state those events meant."""

from __future__ import annotations

from events.catalogue.agent import AgentInputRejected
from events.catalogue.queue import RunDispatched, RunIdled, RunInputPiped, RunQueued, RunQueueOpened, RunReleased
from events.catalogue.router import AgentCursorRolledBack, AgentInputAppended, AgentTurnRequested, ConversationStarted
from events.envelope import AggregateRef, new_commit
from events.repository import Repository
from events.store.memory import InMemoryEventStore
from services.queue.runqueue import QUEUE_ID, RunQueue
from services.router.conversation import Conversation

CHAT = "g@g.us"


async def _store(aggregate_id: str, payloads: list) -> InMemoryEventStore:
    store = InMemoryEventStore()
    ref = AggregateRef.for_payload(payloads[0], aggregate_id)
    await store.append(new_commit(ref, payloads, version=0, source="old"), expected_seq=0)
    return store


async def test_an_old_conversation_with_router_piping_and_a_roll_back_replays_to_its_cursor():
    store = await _store(CHAT, [
        ConversationStarted(chat_jid=CHAT),
        AgentTurnRequested(turn_id="t1", chat_jid=CHAT, group_folder="g", channel="whatsapp", prompt="p", omitted=2,
                           message_ids=["m1"], previous_cursor="", cursor="2026-01-01T00:00:01.000Z"),
        AgentInputAppended(run_id="r1", chat_jid=CHAT, group_folder="g", prompt="p2", message_ids=["m2"],
                           previous_cursor="2026-01-01T00:00:01.000Z", cursor="2026-01-01T00:00:02.000Z"),
        AgentCursorRolledBack(chat_jid=CHAT, run_id="r1", turn_id="t1", cursor="", reason="died"),
        AgentTurnRequested(turn_id="t2", chat_jid=CHAT, group_folder="g", channel="whatsapp", prompt="p",
                           message_ids=["m1", "m2"], previous_cursor="", cursor="2026-01-01T00:00:02.000Z"),
    ])
    conv = await Repository(store, "check").get(Conversation, CHAT)
    assert conv is not None and (conv.cursor, conv.cursor_ids) == ("2026-01-01T00:00:02.000Z", None)
    assert AgentInputRejected.model_validate({"run_id": "r1", "chat_jid": CHAT, "group_folder": "g", "prompt": "p",
                                              "message_ids": ["m2"], "previous_cursor": "", "reason": "gone"})


async def test_an_old_queue_with_router_pipes_and_idles_replays_and_its_group_is_free_again():
    spec = dict(run_id="r1", chat_jid=CHAT, group_folder="g", prompt="p")
    store = await _store(QUEUE_ID, [
        RunQueueOpened(), RunQueued(**spec, turn_id="t1"),
        RunDispatched(**spec, turn_ids=["t1"], queued_run_ids=["r1"]),
        RunIdled(run_id="r1", chat_jid=CHAT), RunInputPiped(run_id="r1", chat_jid=CHAT),
        RunIdled(run_id="r1", chat_jid=CHAT),
    ])
    queue = await Repository(store, "check").get(RunQueue, QUEUE_ID)
    assert queue is not None and queue.active_run(CHAT).state == "idle"  # type: ignore[union-attr]
    store2 = await _store(QUEUE_ID, [
        RunQueueOpened(), RunQueued(**spec, turn_id="t1"), RunDispatched(**spec, turn_ids=["t1"], queued_run_ids=["r1"]),
        RunReleased(run_id="r1", chat_jid=CHAT, group_folder="g", outcome="succeeded"),
    ])
    queue = await Repository(store2, "check").get(RunQueue, QUEUE_ID)
    assert queue is not None and queue.active_run(CHAT) is None and queue.groups[CHAT].messages == []
