"""The router's handlers: pure decisions over (event, read model, conversation aggregate) → events.

Flow (as NanoClaw v1 startMessageLoop + processGroupMessages, event-driven instead of a 2 s poll):
a ``MessageReceived`` in a registered chat that passes the trigger gate → every message after the agent cursor,
in batches of at most ``max_messages_per_prompt`` → one ``AgentTurnRequested`` per batch (issue 13: no cut).
The router keeps no opinion about runs: the queue decides whether a turn starts a run or goes into the
group's live one. ``AgentOutputProduced`` → ``<internal>`` stripped → ``OutboundMessageRequested``. Failed runs
are the queue's (it retries their turns); the cursor only moves forward.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial
from typing import Callable

from events.catalogue.agent import AgentOutputProduced
from events.catalogue.chat import MessageReceived, OutboundMessageRequested, channel_of
from events.repository import Repository
from services.harness.service import Delivery, Emit
from services.router import queries, undelivered
from services.router.config import RouterConfig
from services.router.conversation import Conversation
from services.router.model import Group
from services.router.outbound_text import outbound_text
from services.router.prompt import format_messages
from services.router.selection import advance_cursor, batches, recover_cursor, should_trigger, unseen_messages
from services.router.sender_allowlist import SenderAllowlist, is_trigger_allowed, should_drop_message

_TURN_NS = uuid.UUID("0b0c3f55-8f0e-4a5e-9a3c-6f1e7c2d9a10")


@dataclass
class RouterDeps:
    readmodel: queries.ReadModel
    repository: Repository
    config: RouterConfig
    assistant_name: str
    timezone: str
    allowlist: Callable[[], SenderAllowlist | None]


async def on_message_received(d: Delivery, deps: RouterDeps) -> list[Emit]:
    msg: MessageReceived = d.payload  # type: ignore[assignment]
    group = queries.group(deps.readmodel, msg.chat_jid)
    if group is None or msg.is_bot_message:
        return []
    allowlist = deps.allowlist()
    if allowlist is not None and should_drop_message(allowlist, msg.chat_jid, msg.sender, msg.is_from_me, msg.is_bot_message):
        return []  # v1 drops these before storage; here the log keeps them and the router ignores them
    return await _route(group, deps, seed=d.event.id, trigger_on=[msg.message_id])


async def _route(group: Group, deps: RouterDeps, *, seed: str, trigger_on: list[str] | None) -> list[Emit]:
    conv = await deps.repository.get(Conversation, group.jid)
    if conv is None:
        cursor = recover_cursor(queries.bot_messages(deps.readmodel, group.jid, deps.assistant_name), deps.assistant_name)
        conv = Conversation(chat_jid=group.jid, cursor=cursor)
    stored = queries.messages_from(deps.readmodel, group.jid, conv.cursor)
    allowlist = deps.allowlist()
    if allowlist is not None:
        stored = [m for m in stored if not should_drop_message(allowlist, m.chat_jid, m.sender, m.is_from_me, m.is_bot_message)]
    pending = unseen_messages(stored, conv.cursor, conv.cursor_ids, deps.assistant_name)
    if not pending:
        return []
    gate_on = [m for m in pending if trigger_on is None or m.id in trigger_on]
    allowed = partial(is_trigger_allowed, allowlist) if allowlist is not None else (lambda _c, _s: True)
    if not should_trigger(group, gate_on, deps.assistant_name, allowed):
        return []  # untriggered messages stay pending as context for the next trigger (v1 §6.1)
    channel = queries.chat_channel(deps.readmodel, group.jid) or channel_of(group.jid)
    limit = deps.config.max_messages_per_prompt
    told: list[Emit] = []
    for n, batch in enumerate(batches(pending, limit)):
        # one turn per batch, in order, all in this one commit: the cursor moves past exactly what they carry
        cursor, cursor_ids = advance_cursor(conv.cursor, conv.cursor_ids, batch)
        prompt = format_messages(batch, deps.timezone)
        if n == 0:
            prompt, told = await undelivered.attach(prompt, group.jid, deps)  # failed deliveries, once (NanoClaw #2423)
        conv.request_turn(turn_id=str(uuid.uuid5(_TURN_NS, seed if n == 0 else f"{seed}:{n}")), chat_jid=group.jid,
                          group_folder=group.folder, is_main=group.is_main, channel=channel,
                          prompt=prompt, message_ids=[m.id for m in batch],
                          previous_cursor=conv.cursor, cursor=cursor, cursor_ids=cursor_ids, batch_limit=limit,
                          seq=conv.next_seq)  # the chat's turn order, which the queue keeps (docs/agent-runs.md)
    emit = Emit.of(conv)
    return [emit, *told] if emit else []


async def on_agent_output(d: Delivery, deps: RouterDeps) -> list[Emit]:
    out: AgentOutputProduced = d.payload  # type: ignore[assignment]
    text = outbound_text(out.text)
    if text is None:
        return []  # nothing user-facing remains once <internal> blocks are gone
    channel = out.channel or queries.chat_channel(deps.readmodel, out.chat_jid) or channel_of(out.chat_jid)
    request = OutboundMessageRequested(channel=channel, chat_jid=out.chat_jid, text=text,  # type: ignore[arg-type]
                                       group_folder=out.group_folder, run_id=out.run_id)
    return [Emit.new(f"{out.run_id}:{d.event.id}", request)]


async def recover_pending(deps: RouterDeps) -> list[Emit]:
    """Start-up recovery (v1 recoverPendingMessages): groups with triggered messages after their cursor get a
    turn request. Keyed on the cursor position, so a restart without news requests nothing twice."""
    emits: list[Emit] = []
    for group in queries.groups(deps.readmodel):
        conv = await deps.repository.get(Conversation, group.jid)
        cursor = f"{conv.cursor}:{len(conv.cursor_ids or ())}" if conv else ""
        emits += await _route(group, deps, seed=f"recover:{group.jid}:{cursor}", trigger_on=None)
    return emits
