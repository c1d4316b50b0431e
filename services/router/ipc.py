"""The router's IPC tools (NATS requests ``nc.ipc.<folder>.<tool>`` from agents): ``send_message`` and
``register_group``.

Identity is the subject's folder token (the NATS server lets a run publish only under its own folder); the
payload never decides who is asking. Authorization as NanoClaw v1 ipc.ts (nanoclaw-behaviour §11.4): main
may message any chat, others only their own; only main registers groups, and registration can never make a
group main. Tightened: ``<internal>`` blocks are stripped here too (v1 sent IPC text raw, quirk 4), and the
tool's answer is the delivery receipt, not "requested" (quirk 18).
"""

from __future__ import annotations

import asyncio
from typing import Any

from events.catalogue.chat import OutboundMessageRequested, channel_of
from events.catalogue.types import iso_utc
from events.envelope import AggregateRef, utcnow
from services.harness.service import Emit, Reply, Request
from services.router import queries
from services.router.folders import InvalidFolder
from services.router.groups import GroupError, RegisteredGroup
from services.router.handlers import RouterDeps
from services.router.model import Group
from services.router.outbound_text import outbound_text
from services.router.trigger import default_trigger

IPC_PREFIX = "nc.ipc"


_RECEIPT_POLL_S = 0.1


def _requester(req: Request, deps: RouterDeps) -> Group | None:
    return queries.group_by_folder(deps.readmodel, req.token(2))


def _msg_id(req: Request, me: Group) -> str:
    """The idempotency key of a request's commit: a retried call (same ``Nc-Request-Id``) is stored once, but
    the same id from another folder or for another tool is another request (the harness's default key names
    neither, so such a request would be dropped as a duplicate while its answer said "ok")."""
    return f"ipc:{me.folder}:{req.token(3)}:{req.request_id}"


def _text(data: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


async def send_message(req: Request, deps: RouterDeps) -> Reply:
    """Args (JSON): ``text`` (str), ``chat_jid`` (str, optional: default the requester's own chat), ``run_id``.
    Answer: ``{"status": "sent", "chat_jid"}`` after the channel accepted it, ``"pending"`` when no receipt
    arrived within ``router.send_receipt_timeout_s`` (the channel is down; the gateway keeps it), or an error."""
    me = _requester(req, deps)
    if me is None:
        return Reply.failure(f"no registered group has folder {req.token(2)!r}")
    try:
        raw = _text(req.data, "text")
        target = _text(req.data, "chat_jid", required=False) or me.jid
    except ValueError as exc:
        return Reply.failure(str(exc))
    if target != me.jid and not me.is_main:
        return Reply.refusal(f"group {me.folder!r} may only send to its own chat ({me.jid}); only the main group "
                             "may message other chats")
    text = outbound_text(raw)
    if text is None:
        return Reply.failure("nothing to send: the text is empty once <internal> blocks are removed")
    channel = queries.chat_channel(deps.readmodel, target) or channel_of(target)
    run_id = req.data.get("run_id") if isinstance(req.data.get("run_id"), str) else None
    emit = Emit.new(f"ipc:{me.folder}:{req.request_id}",
                    OutboundMessageRequested(channel=channel, chat_jid=target, text=text,  # type: ignore[arg-type]
                                             group_folder=me.folder, run_id=run_id),
                    msg_id=_msg_id(req, me))
    reply = Reply.success({"status": "pending", "chat_jid": target}, emit)
    return _with_receipt(reply, emit.aggregate, target, deps)


def _with_receipt(reply: Reply, ref: AggregateRef, chat_jid: str, deps: RouterDeps) -> Reply:
    async def receipt() -> Reply:
        deadline = asyncio.get_running_loop().time() + deps.config.send_receipt_timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for commit in await deps.repository.store.load(ref):
                for event in commit.events:
                    if event.eventtype == "MessageSent":
                        return Reply.success({"status": "sent", "chat_jid": chat_jid})
                    if event.eventtype == "MessageDeliveryFailed":
                        return Reply.failure(f"delivery to {chat_jid} failed: {event.data.get('reason')}")
            await asyncio.sleep(_RECEIPT_POLL_S)
        return reply  # stored; the gateway delivers it once the channel is back
    return Reply(reply.ok, reply.result, reply.error, reply.emits, then=receipt)


async def register_group(req: Request, deps: RouterDeps) -> Reply:
    """Args: ``jid``, ``name``, ``folder``, ``trigger`` (str), ``requires_trigger`` (bool, default True: the
    safe default of v1's database; v1's tool sent False, quirk 5). Main only. Re-registering an existing JID
    updates it; ``is_main`` is always kept from the existing entry (false for new groups)."""
    me = _requester(req, deps)
    if me is None:
        return Reply.failure(f"no registered group has folder {req.token(2)!r}")
    if not me.is_main:
        return Reply.refusal("Only the main group can register new groups.")
    try:
        jid, name, folder = (_text(req.data, k) for k in ("jid", "name", "folder"))
        trigger = _text(req.data, "trigger", required=False) or default_trigger(deps.assistant_name)
    except ValueError as exc:
        return Reply.failure(str(exc))
    requires_trigger = req.data.get("requires_trigger", True)
    if not isinstance(requires_trigger, bool):
        return Reply.failure("'requires_trigger' must be true or false")
    holder = queries.group_by_folder(deps.readmodel, folder)
    if holder is not None and holder.jid != jid:
        return Reply.failure(f"folder {folder!r} is already used by {holder.jid}")
    existing = queries.group(deps.readmodel, jid)
    fields = dict(jid=jid, name=name, folder=folder, trigger=trigger, requires_trigger=requires_trigger,
                  is_main=existing.is_main if existing else False, channel=channel_of(jid),
                  container_config=existing.container_config if existing else None, added_at=iso_utc(utcnow()))
    repo_group = await deps.repository.get(RegisteredGroup, jid)
    try:
        if repo_group is None:
            group = RegisteredGroup.register(**fields)
        elif repo_group.removed:
            group = repo_group
            group.reinstate(**fields)
        else:
            if folder != repo_group.folder:
                return Reply.failure(f"{jid} is registered with folder {repo_group.folder!r}; the folder cannot change")
            group = repo_group
            group.update(name=name, trigger=trigger, requires_trigger=requires_trigger)
    except (GroupError, InvalidFolder) as exc:
        return Reply.failure(str(exc))
    return Reply.success({"status": "registered", "jid": jid, "folder": folder}, Emit.of(group, msg_id=_msg_id(req, me)))


REQUESTS = {f"{IPC_PREFIX}.*.send_message": send_message, f"{IPC_PREFIX}.*.register_group": register_group}
