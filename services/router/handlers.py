"""The router's handlers: pure decisions over (event, read model, conversation aggregate) → events.

Flow (as NanoClaw v1 startMessageLoop + processGroupMessages, event-driven instead of a 2 s poll):
a ``MessageReceived`` in a registered chat that passes the trigger gate → the pending messages after the
agent cursor become one prompt → ``AgentTurnRequested`` (or ``AgentInputAppended`` when a message run is
already active). ``AgentOutputProduced`` → ``<internal>`` stripped → ``OutboundMessageRequested``.
``AgentRunFinished`` failed with nothing delivered → ``AgentCursorRolledBack``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial
from typing import Callable

from events.catalogue.agent import AgentInputRejected, AgentOutputProduced, AgentRunFinished
from events.catalogue.queue import MessageRetryDue
from events.catalogue.chat import MessageReceived, OutboundMessageRequested, channel_of
from events.repository import Repository
from services.harness.service import Delivery, Emit
from services.router import queries, undelivered
from services.router.config import RouterConfig
from services.router.conversation import Conversation
from services.router.model import Group
from services.router.outbound_text import outbound_text
from services.router.prompt import format_messages
from services.router.selection import pending_messages, recover_cursor, should_trigger
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
    stored = queries.messages_after(deps.readmodel, group.jid, conv.cursor)
    allowlist = deps.allowlist()
    if allowlist is not None:
        stored = [m for m in stored if not should_drop_message(allowlist, m.chat_jid, m.sender, m.is_from_me, m.is_bot_message)]
    pending, omitted = pending_messages(stored, conv.cursor, deps.assistant_name, deps.config.max_messages_per_prompt)
    if not pending:
        return []
    gate_on = [m for m in pending if trigger_on is None or m.id in trigger_on]
    allowed = partial(is_trigger_allowed, allowlist) if allowlist is not None else (lambda _c, _s: True)
    if not should_trigger(group, gate_on, deps.assistant_name, allowed):
        return []  # untriggered messages stay pending as context for the next trigger (v1 §6.1)
    prompt = format_messages(pending, deps.timezone, omitted=omitted)
    prompt, told = await undelivered.attach(prompt, group.jid, deps)  # failed deliveries, once (NanoClaw #2423)
    ids = [m.id for m in pending]
    run_id = queries.active_message_run(deps.readmodel, group.jid)
    if run_id is not None:
        conv.append_input(run_id=run_id, chat_jid=group.jid, group_folder=group.folder, prompt=prompt,
                          message_ids=ids, previous_cursor=conv.cursor, cursor=pending[-1].timestamp)
    else:
        channel = queries.chat_channel(deps.readmodel, group.jid) or channel_of(group.jid)
        conv.request_turn(turn_id=str(uuid.uuid5(_TURN_NS, seed)), chat_jid=group.jid, group_folder=group.folder,
                          is_main=group.is_main, channel=channel, prompt=prompt, message_ids=ids,
                          previous_cursor=conv.cursor, cursor=pending[-1].timestamp, omitted=omitted)
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


async def on_run_finished(d: Delivery, deps: RouterDeps) -> list[Emit]:
    fin: AgentRunFinished = d.payload  # type: ignore[assignment]
    if fin.status == "succeeded" or fin.output_delivered:
        return []  # output reached the user: keep the cursor, no duplicate replies (v1 §7 step 8)
    conv = await deps.repository.get(Conversation, fin.chat_jid)
    turn = queries.run_turn(deps.readmodel, fin.run_id)
    if conv is None or not conv.roll_back(fin.run_id, turn, reason=fin.error or fin.status):
        return []
    emit = Emit.of(conv)
    return [emit] if emit else []


async def on_retry_due(d: Delivery, deps: RouterDeps) -> list[Emit]:
    """The queue's retry of a failed message run (v1 scheduleRetry → enqueueMessageCheck): re-read the
    pending messages, which the failed run's roll-back made pending again, and request a turn."""
    due: MessageRetryDue = d.payload  # type: ignore[assignment]
    group = queries.group(deps.readmodel, due.chat_jid)
    return [] if group is None else await _route(group, deps, seed=d.event.id, trigger_on=None)


async def on_input_rejected(d: Delivery, deps: RouterDeps) -> list[Emit]:
    """A follow-up missed its run (the run ended first): hand the same messages to a new turn. The cursor
    stays where it is, so later messages are not answered twice."""
    rej: AgentInputRejected = d.payload  # type: ignore[assignment]
    group = queries.group(deps.readmodel, rej.chat_jid)
    conv = await deps.repository.get(Conversation, rej.chat_jid)
    if group is None or conv is None:
        return []
    channel = queries.chat_channel(deps.readmodel, group.jid) or channel_of(group.jid)
    conv.request_turn(turn_id=str(uuid.uuid5(_TURN_NS, d.event.id)), chat_jid=group.jid, group_folder=group.folder,
                      is_main=group.is_main, channel=channel, prompt=rej.prompt, message_ids=rej.message_ids,
                      previous_cursor=rej.previous_cursor, cursor=conv.cursor)
    emit = Emit.of(conv)
    return [emit] if emit else []


async def recover_pending(deps: RouterDeps) -> list[Emit]:
    """Start-up recovery (v1 recoverPendingMessages): groups with triggered messages after their cursor get a
    turn request. Keyed on the cursor position, so a restart without news requests nothing twice."""
    emits: list[Emit] = []
    for group in queries.groups(deps.readmodel):
        conv = await deps.repository.get(Conversation, group.jid)
        cursor = conv.cursor if conv else ""
        emits += await _route(group, deps, seed=f"recover:{group.jid}:{cursor}", trigger_on=None)
    return emits
