"""Inbound translation: a neonize ``MessageEv`` → a ``MessageReceived`` payload (or ``None``: nothing to store).

Follows NanoClaw v1 whatsapp.ts ``messages.upsert`` (nanoclaw-behaviour §4, scenarios §24.3 "Inbound", "LID"):

- skip ``status@broadcast`` and events without a message;
- unwrap containers (ephemeral, view-once, edited, document-with-caption, device-sent);
- text = conversation / extended text / image, video or document caption; empty text → skipped (voice notes,
  stickers, reactions and caption-less media are dropped, quirk 19);
- LID → phone JID for chat and sender; a mention of the bot's own LID becomes ``@<assistant_name>`` so the
  trigger matches;
- ``is_bot_message``: own number → ``is_from_me``; shared number → text starts with ``"<assistant_name>:"``.

Deliberate differences from v1: the sender of a message I sent in a DM is me (v1 used the chat JID, because
Baileys' ``key.participant`` is empty there), and quoted-reply context is kept (v1 dropped it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from neonize.proto.Neonize_pb2 import JID
from neonize.proto.Neonize_pb2 import Message as MessageEv
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, Message
from neonize.utils import extract_text

from events.catalogue.chat import MessageReceived
from services.gateway.whatsapp.jid import (
    STATUS_BROADCAST,
    USER_SERVER,
    is_group_jid,
    is_lid_jid,
    jid_str,
    parse_jid,
    server_of,
    user_of,
)
from services.gateway.whatsapp.lid import LidResolver

# Wrappers whose ``.message`` holds the real content. whatsmeow's ``UnwrapRaw`` already removes these before
# neonize encodes the event (the ``IsEphemeral``/``IsViewOnce``/``IsEdit`` flags tell which), so this is a
# second line of defence for anything that arrives still wrapped, e.g. a quoted message.
_CONTAINERS = (
    "deviceSentMessage",
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
)
_MAX_UNWRAP_DEPTH = 5  # as Baileys normalizeMessageContent; containers never nest deeper in practice

# Timestamps below this are seconds, not milliseconds (10**11 ms is 1973; 10**11 s is year 5138). neonize
# encodes Info.Timestamp with UnixMilli (stack-notes §1.3); the guard keeps a future encoder change from
# silently dating every message 1970.
_SECONDS_GUARD = 10**11


@dataclass(frozen=True)
class InboundContext:
    """What translation needs to know about this installation.

    Attributes:
        assistant_name: ``ASSISTANT_NAME`` (default trigger ``@<name>``, reply prefix ``"<name>: "``).
        has_own_number: ``ASSISTANT_HAS_OWN_NUMBER``: the bot has its own WhatsApp account (no reply prefix;
            its messages are recognised by ``is_from_me``).
        bot_lid_user: the user part of the logged-in account's LID (``client.me``/``get_me()``), or ``None``.
            ``@<bot_lid_user>`` in a message is rewritten to ``@<assistant_name>``.
        bot_phone_user: the logged-in account's phone number (user part), or ``None``; used on an own-number
            install only: ``@<bot_phone_user>`` is rewritten too, and a quote of it is named the assistant.
        lid_resolver: LID store lookup after ``SenderAlt``/``RecipientAlt`` (see :mod:`lid`); ``None`` means
            unknown LIDs always pass through.
    """

    assistant_name: str
    has_own_number: bool = False
    bot_lid_user: str | None = None
    bot_phone_user: str | None = None
    lid_resolver: LidResolver | None = None


async def to_message_received(ev: MessageEv, ctx: InboundContext) -> MessageReceived | None:
    """Translate one neonize ``MessageEv`` (``neonize.proto.Neonize_pb2.Message``).

    Returns:
        ``MessageReceived`` with ``channel="whatsapp"``, ``chat_jid``/``sender`` as ``"user@server"`` (phone
        JIDs where the LID could be resolved), ``timestamp`` from ``Info.Timestamp`` (epoch **milliseconds**),
        or ``None`` for ``status@broadcast``, an event without a message, or a message with no text.

    Never raises for odd messages; the LID resolver is expected not to raise either (:class:`LidResolver`).
    """
    src = ev.Info.MessageSource
    chat = jid_str(src.Chat)
    if chat == STATUS_BROADCAST or not ev.HasField("Message"):
        return None
    content = unwrap(ev.Message)
    text = extract_text(content)
    if not text.strip():
        return None

    sender = await _to_phone(jid_str(src.Sender), src.SenderAlt, ctx)
    # In a DM the chat JID is the other person, addressed by LID like the sender; their phone JID is SenderAlt
    # when they wrote, RecipientAlt when I wrote.
    chat_alt = src.RecipientAlt if src.IsFromMe else (src.SenderAlt if src.Chat.User == src.Sender.User else JID())
    chat = await _to_phone(chat, chat_alt, ctx)

    text = _rewrite_bot_mentions(text, ctx)

    reply_id, reply_text, reply_name = await _quote(content, sender, ev.Info.Pushname, ctx)
    return MessageReceived(
        channel="whatsapp",
        chat_jid=chat,
        message_id=ev.Info.ID,
        sender=sender,
        sender_name=ev.Info.Pushname or user_of(sender),
        text=text,
        timestamp=_sent_at(ev.Info.Timestamp),
        is_from_me=src.IsFromMe,
        is_bot_message=is_bot_message(text, is_from_me=src.IsFromMe, assistant_name=ctx.assistant_name,
                                      has_own_number=ctx.has_own_number),
        is_group=is_group_jid(chat),
        reply_to_message_id=reply_id,
        reply_to_text=reply_text,
        reply_to_sender_name=reply_name,
    )


def is_bot_message(text: str, *, is_from_me: bool, assistant_name: str, has_own_number: bool) -> bool:
    """NanoClaw v1: ``ASSISTANT_HAS_OWN_NUMBER ? fromMe : content.startsWith("<name>:")``.

    On a shared number the owner's own messages are ``is_from_me`` too, so only the prefix tells the bot's
    replies apart (quirk 14: renaming the assistant breaks recognition of old replies)."""
    return is_from_me if has_own_number else text.startswith(f"{assistant_name}:")


def _rewrite_bot_mentions(text: str, ctx: InboundContext) -> str:
    """``@<bot_lid_user>`` → ``@<assistant_name>``, as NanoClaw v1, so the ``@Andy`` trigger matches a mention
    made by tapping the bot's contact. With its own number the bot's phone number is rewritten too (groups that
    still address members by phone number); on a shared number that number is the owner's, so it is left alone.
    """
    users = [ctx.bot_lid_user] + ([ctx.bot_phone_user] if ctx.has_own_number else [])
    for user in filter(None, users):
        # (?!\d): @123 must not match inside @1234. A function replacement keeps the name literal.
        text = re.sub(rf"@{re.escape(user)}(?!\d)", lambda _m: f"@{ctx.assistant_name}", text)
    return text


def unwrap(message: Message) -> Message:
    """Strip container messages (ephemeral, view-once, edited, …) down to the content message.

    An edit arrives as ``protocolMessage.editedMessage`` (inside ``editedMessage`` on newer clients); the new
    content is returned, so an edited message is delivered as a new message with the edit's own id.
    """
    for _ in range(_MAX_UNWRAP_DEPTH):
        for name in _CONTAINERS:
            if message.HasField(name) and getattr(message, name).HasField("message"):
                message = getattr(message, name).message
                break
        else:
            if message.HasField("protocolMessage") and message.protocolMessage.HasField("editedMessage"):
                message = message.protocolMessage.editedMessage
                continue
            return message
    return message


def context_info(message: Message) -> ContextInfo | None:
    """The ``contextInfo`` of whichever content field carries one (extended text, image, video, …)."""
    for field, value in message.ListFields():
        if field.message_type is not None and "contextInfo" in field.message_type.fields_by_name:
            if value.HasField("contextInfo"):
                return value.contextInfo
    return None


async def _quote(content: Message, sender: str, pushname: str,
                 ctx: InboundContext) -> tuple[str | None, str | None, str | None]:
    """(reply_to_message_id, reply_to_text, reply_to_sender_name) from the content's ``contextInfo``.

    WhatsApp carries only the quoted author's JID (``participant``), not a name, so the name is the best we
    have: the assistant's name for a quoted bot reply, the push name when people quote themselves, else the
    (phone) number."""
    info = context_info(content)
    if info is None or not info.stanzaID:
        return None, None, None
    quoted_text = extract_text(unwrap(info.quotedMessage)) if info.HasField("quotedMessage") else ""
    name = None
    if info.participant:
        try:
            raw = jid_str(parse_jid(info.participant))
        except ValueError:
            raw = info.participant
        author = await _to_phone(raw, JID(), ctx)
        bot_users = {u for u in (ctx.bot_lid_user, ctx.bot_phone_user) if u}
        if quoted_text.startswith(f"{ctx.assistant_name}:") or (ctx.has_own_number and user_of(raw) in bot_users):
            name = ctx.assistant_name
        elif author == sender and pushname:
            name = pushname
        else:
            name = user_of(author)
    return info.stanzaID, quoted_text or None, name


async def _to_phone(jid: str, alt: JID, ctx: InboundContext) -> str:
    """LID → phone JID: the message's own alternative address first, then the resolver; else unchanged."""
    if not is_lid_jid(jid):
        return jid
    alt_str = jid_str(alt)
    if server_of(alt_str) == USER_SERVER:
        return alt_str
    if ctx.lid_resolver is not None:
        pn = await ctx.lid_resolver.pn_for_lid(jid)
        if pn:
            return pn
    return jid


def _sent_at(ts: int) -> datetime:
    """``Info.Timestamp`` (epoch ms) → aware UTC datetime; a missing (0) timestamp means "now"."""
    if ts <= 0:
        return datetime.now(timezone.utc)
    if ts < _SECONDS_GUARD:
        ts *= 1000
    return datetime.fromtimestamp(ts / 1000, timezone.utc)
