"""Agent output → text for the chat (NanoClaw v1 ``router.ts stripInternalTags``/``formatOutbound``, §10).

The agent may wrap notes to itself in ``<internal>…</internal>``; those never reach the user.
"""

from __future__ import annotations

import re

from services.router.model import js_trim

# Non-greedy and DOTALL: each block ends at its first closing tag, and blocks may span lines (NanoClaw's
# /<internal>[\s\S]*?<\/internal>/g). Case-sensitive, like NanoClaw.
_INTERNAL_BLOCK = re.compile(r"<internal>.*?</internal>", re.DOTALL)


def strip_internal(text: str) -> str:
    """Remove every ``<internal>…</internal>`` block, then trim (JS ``trim``) the result.

    Text around a block is kept as is, so ``"hello <internal>x</internal> world"`` → ``"hello  world"``
    (two spaces). An unclosed ``<internal>`` is left in place, as in NanoClaw.

    One deliberate difference: NanoClaw removes blocks in a single pass, so removing one can splice a new
    block together (``"<inte<internal>x</internal>rnal>secret</internal>"`` leaves
    ``"<internal>secret</internal>"``) and leak it. We repeat until nothing changes, which makes the function
    idempotent; ordinary output is unaffected.
    """
    previous = None
    while previous != text:
        previous, text = text, _INTERNAL_BLOCK.sub("", text)
    return js_trim(text)


def outbound_text(raw: str | None) -> str | None:
    """The text to send for an agent result, or ``None`` when nothing is left to send.

    :func:`strip_internal` applied to ``raw``; ``None``, ``""``, whitespace and all-internal output give
    ``None`` (NanoClaw sends nothing for those). Meant for every outbound path: streamed results,
    scheduled-task results and ``send_message`` requests alike (NanoClaw does not strip the last, quirk §23.4).
    """
    if not raw:
        return None
    return strip_internal(raw) or None


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
