"""Chat-path events: channels, inbound messages, outbound delivery (issue: the chat path)."""

from __future__ import annotations

import unicodedata
from typing import Literal

from events.catalogue.base import EventPayload
from events.catalogue.types import UtcTimestamp

Channel = Literal["whatsapp", "terminal", "http"]


def channel_of(jid: str) -> Channel:
    """The channel a chat JID belongs to: ``http:<chat>`` → http, ``term:<name>`` → terminal, anything else
    (``…@g.us``, ``…@s.whatsapp.net``) → whatsapp."""
    return "http" if jid.startswith("http:") else "terminal" if jid.startswith("term:") else "whatsapp"


HTTP_CHAT_MAX = 200
_HTTP_CHAT_PUNCTUATION = frozenset("_@.:+-")


def http_chat_problem(chat: str) -> str | None:
    """Why ``chat`` cannot be the chat id of the webhook channel (JID ``http:<chat>``), or None if it can.

    The rule, shared by the gateway (``POST /v1/messages``) and the router (registering ``http:<chat>``), so a
    chat that can be registered can also be written to: 1 to 200 characters, each a letter or digit of any
    script (``str.isalnum``: ``café``, ``поддержка``, ``支持`` are fine) or one of ``_ @ . : + -``; in Unicode
    NFC (composed) form, so the same name typed on two systems is the same chat. No spaces, slashes or
    control characters (the id is a URL path segment in ``GET /v1/chats/{chat}/messages``).
    """
    if not 1 <= len(chat) <= HTTP_CHAT_MAX:
        return f"must be 1 to {HTTP_CHAT_MAX} characters"
    bad = next((c for c in chat if not (c.isalnum() or c in _HTTP_CHAT_PUNCTUATION)), None)
    if bad is not None:
        return f"character {bad!r} is not allowed (letters and digits of any script, and _ @ . : + -)"
    if unicodedata.normalize("NFC", chat) != chat:
        return "must be in Unicode NFC (composed) form"
    return None


class MessageReceived(EventPayload):
    """A message arrived on a channel. Aggregate id: ``<chat_jid>/<message_id>``; the idempotency key is the
    channel's message id, so a redelivered message is stored once. ``timestamp`` is the sender's time."""

    context = "chat"
    aggregate = "message"

    channel: Channel
    chat_jid: str
    message_id: str
    sender: str
    sender_name: str
    text: str
    timestamp: UtcTimestamp
    is_from_me: bool = False
    is_bot_message: bool = False
    is_group: bool = False
    chat_name: str | None = None
    reply_to_message_id: str | None = None
    reply_to_text: str | None = None
    reply_to_sender_name: str | None = None


class ChatNameSynced(EventPayload):
    """A chat's display name as reported by the channel (WhatsApp group sync at start and every 24 h).
    Aggregate id: the chat JID."""

    context = "chat"
    aggregate = "chat"

    channel: Channel
    chat_jid: str
    name: str
    is_group: bool = True
    at: UtcTimestamp


class ChannelStatusChanged(EventPayload):
    """A channel's connection state changed. Aggregate id: the channel name. ``status`` values that need the
    user (``logged_out``, ``stream_replaced``, ``temporary_ban``, ``connect_failed``) carry ``action``."""

    context = "chat"
    aggregate = "channel"

    channel: Channel
    status: Literal["connecting", "connected", "disconnected", "logged_out", "stream_replaced", "temporary_ban", "connect_failed"]
    detail: str = ""
    action: str = ""
    at: UtcTimestamp


class OutboundMessageRequested(EventPayload):
    """Send ``text`` to ``chat_jid``. Aggregate id: the request id. Every request ends in ``MessageSent``
    or ``MessageDeliveryFailed`` on the same aggregate (the delivery receipt)."""

    context = "chat"
    aggregate = "outbound"

    channel: Channel
    chat_jid: str
    text: str
    group_folder: str | None = None
    run_id: str | None = None
    reply_to_message_id: str | None = None


class MessageSent(EventPayload):
    """The channel accepted an outbound message. Aggregate id: the request id."""

    context = "chat"
    aggregate = "outbound"

    channel: Channel
    chat_jid: str
    channel_message_id: str
    sent_at: UtcTimestamp
    attempts: int = 1


class MessageDeliveryFailed(EventPayload):
    """An outbound message could not be delivered and will not be retried. Aggregate id: the request id."""

    context = "chat"
    aggregate = "outbound"

    channel: Channel
    chat_jid: str
    reason: str
    attempts: int
    at: UtcTimestamp
