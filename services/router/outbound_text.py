"""Agent output → text for the chat (NanoClaw v1 ``router.ts stripInternalTags``/``formatOutbound``, §10).

The agent may wrap notes to itself in ``<internal>…</internal>``; those never reach the user.
"""

from __future__ import annotations

# One stripper for the whole system (events/catalogue/output_text.py): the runner decides "delivered" with it.
from events.catalogue.output_text import strip_internal, user_text

outbound_text = user_text
"""The text to send for an agent result, or ``None`` (see :func:`events.catalogue.output_text.user_text`)."""

__all__ = ["format_outbound_prefix", "outbound_text", "strip_internal"]


def format_outbound_prefix(text: str, assistant_name: str, has_own_number: bool) -> str:
    """Add the ``"<assistant_name>: "`` prefix that marks the bot's messages on a shared number.

    As the NanoClaw WhatsApp channel's ``sendMessage`` (§10, §24.3): on a shared number
    (``has_own_number=False``) every message is prefixed, in groups and DMs alike (``"Hello"`` →
    ``"Andy: Hello"``); the prefix is also how the bot later recognises its own messages
    (``selection.is_bot_message``). With its own number the text goes out unchanged.
    Text that already starts with the prefix is prefixed again, as NanoClaw does.
    """
    if has_own_number:
        return text
    return f"{assistant_name}: {text}"
