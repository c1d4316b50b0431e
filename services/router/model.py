"""Plain data the router's pure logic works on: stored messages and registered groups.

These mirror NanoClaw v1's SQLite rows (nanoclaw-behaviour §15) so the selection and prompt rules can be
checked against NanoClaw's own tests without a database. They carry no behaviour beyond :func:`js_trim`, the
one string helper the router modules share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The one JS-trim of the system lives with the output rules (the router trims triggers and content with it too).
from events.catalogue.output_text import js_trim  # noqa: F401  (re-exported for the router modules)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One row of NanoClaw's ``messages`` table (§15), as the router reads it.

    Attributes:
        id: the channel's message id; unique together with ``chat_jid``.
        chat_jid: the chat, e.g. ``"123@g.us"`` (WhatsApp group) or ``"447700900000@s.whatsapp.net"`` (DM).
        sender: the sender's JID (what the sender allowlist matches, exactly).
        sender_name: display name (push name, or the number part of the JID).
        content: the text; ``""`` for media without caption (never selected for a prompt).
        timestamp: ISO-8601 UTC with milliseconds and ``Z``, e.g. ``"2024-01-01T13:30:00.000Z"``. Cursors
            compare these as strings, so every producer must use this exact shape.
        is_from_me: sent from the account the bot runs on (the owner, on a shared number).
        is_bot_message: written by the assistant itself.
        reply_to_message_id: id of the quoted message, when this message is a reply.
        reply_to_message_content: text of the quoted message, when known.
        reply_to_sender_name: display name of the quoted message's sender, when known.
    """

    id: str
    chat_jid: str
    sender: str
    sender_name: str
    content: str
    timestamp: str
    is_from_me: bool = False
    is_bot_message: bool = False
    reply_to_message_id: str | None = None
    reply_to_message_content: str | None = None
    reply_to_sender_name: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """A registered group: one row of NanoClaw's ``registered_groups`` table (§15).

    Attributes:
        jid: the chat JID the group is registered for.
        name: display name.
        folder: the group's directory name under ``groups/``; check it with
            :func:`services.router.folders.validate_folder` before use (this class does not validate).
        trigger: the group's trigger word, e.g. ``"@Andy"``. Blank means "use the default trigger"
            (see :func:`services.router.trigger.group_trigger`).
        requires_trigger: whether non-main messages must start with the trigger (DB default 1 → ``True``).
        is_main: the owner's control group; it never needs a trigger.
        container_config: ``{"additionalMounts": [...], "timeout": ms}`` or ``None``.

    Frozen, but not hashable when ``container_config`` is a dict.
    """

    jid: str
    name: str
    folder: str
    trigger: str
    requires_trigger: bool = True
    is_main: bool = False
    container_config: dict[str, Any] | None = None
