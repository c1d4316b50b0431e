"""A failed outbound delivery is told to the agent at its next turn (NanoClaw issue #2423: the agent believed its
reply had reached the person when the channel had dropped it).

``MessageDeliveryFailed`` for a message the agent wrote (not a router notice) is noted on the chat's ledger
(``UndeliveredReplyNoted``, with the start of the text the request carried). The next prompt the router builds
for that chat, a new turn or a follow-up, starts with::

    <undelivered count="1" note="these messages you sent earlier did not reach the chat; the person has not seen them">
    <undelivered_message time="Mar 1, 2026, 10:00 AM" reason="whatsapp: not connected">The shop opens at 9.</undelivered_message>
    </undelivered>

and the same commit round records ``UndeliveredRepliesTold`` so each failure is named once. Everything is escaped
as the rest of the prompt (services/router/prompt.py); the element names contain no ``<message `` tag, so counting
messages in a prompt still works.
"""

from __future__ import annotations

from events.catalogue.chat import MessageDeliveryFailed, OutboundMessageRequested
from events.catalogue.types import iso_utc
from events.envelope import AggregateRef
from services.harness.service import Delivery, Emit
from services.router import queries
from services.router.notice_ledger import ChatNotices
from services.router.prompt import escape_xml, format_local_time

NOTE = "these messages you sent earlier did not reach the chat; the person has not seen them"


async def on_delivery_failed(d: Delivery, deps) -> list[Emit]:
    failed: MessageDeliveryFailed = d.payload  # type: ignore[assignment]
    request_id = d.event.aggregateid
    if request_id.startswith("notice:") or queries.group(deps.readmodel, failed.chat_jid) is None:
        return []  # the router's own failure notices are not the agent's words
    ledger = await deps.repository.get(ChatNotices, failed.chat_jid) or ChatNotices(chat_jid=failed.chat_jid)
    if not ledger.note_undelivered(request_id, failed.reason, await _requested_text(deps, request_id),
                                   iso_utc(d.event.time)):
        return []
    emit = Emit.of(ledger)
    return [emit] if emit else []


async def _requested_text(deps, request_id: str) -> str:
    """The text of outbound request ``request_id`` (its aggregate's ``OutboundMessageRequested``), or ``""``."""
    for commit in await deps.repository.store.load(AggregateRef("chat", "outbound", request_id)):
        for ce in commit.events:
            if ce.eventtype == OutboundMessageRequested.__name__:
                return str(ce.data.get("text") or "")
    return ""


async def attach(prompt: str, chat_jid: str, deps) -> tuple[str, list[Emit]]:
    """``prompt`` with the chat's untold undelivered messages in front, and the emit recording them as told (to
    be appended after the turn's own). Unchanged, and no emit, when there is nothing to tell."""
    ledger = await deps.repository.get(ChatNotices, chat_jid)
    if ledger is None or not ledger.undelivered:
        return prompt, []
    items = sorted(ledger.undelivered.items(), key=lambda kv: kv[1]["at"])
    lines = [f'<undelivered count="{len(items)}" note="{NOTE}">']
    lines += [f'<undelivered_message time="{escape_xml(format_local_time(u["at"], deps.timezone))}" '
              f'reason="{escape_xml(u["reason"])}">{escape_xml(u["text"])}</undelivered_message>' for _, u in items]
    lines.append("</undelivered>")
    ledger.told(chat_jid=chat_jid, request_ids=[request_id for request_id, _ in items])
    emit = Emit.of(ledger)
    return "\n".join(lines) + "\n" + prompt, [emit] if emit else []


HANDLERS = {"MessageDeliveryFailed": on_delivery_failed}
