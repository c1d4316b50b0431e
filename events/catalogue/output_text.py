"""What of an agent result reaches the user: the one ``<internal>`` stripper and the one "delivered" rule.

The runner (is this run's output delivered? → ``AgentRunFinished.output_delivered``) and the router (what text
goes out → ``OutboundMessageRequested``) both decide from this module, so they can never disagree (before, each
had its own regex and trimming, issue 13). Rules as NanoClaw v1 ``router.ts stripInternalTags``/``formatOutbound``
(nanoclaw-behaviour §10).
"""

from __future__ import annotations

import re

# JavaScript's String.prototype.trim() strips exactly the ECMAScript WhiteSpace and LineTerminator code
# points. Python's str.strip() uses a different set (it also strips \x1c-\x1f and \x85, and keeps the
# BOM \ufeff), so NanoClaw's "trimmed content" rules are reproduced with this explicit set instead.
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)

# Non-greedy and DOTALL: each block ends at its first closing tag, and blocks may span lines (NanoClaw's
# /<internal>[\s\S]*?<\/internal>/g). Case-sensitive, like NanoClaw.
_INTERNAL_BLOCK = re.compile(r"<internal>.*?</internal>", re.DOTALL)


def js_trim(text: str) -> str:
    """Strip leading and trailing whitespace exactly as JavaScript's ``String.prototype.trim`` does."""
    return text.strip(JS_WHITESPACE)


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


def user_text(raw: str | None) -> str | None:
    """The text the user gets for an agent result, or ``None`` when nothing reaches the user.

    :func:`strip_internal` applied to ``raw``; ``None``, ``""``, whitespace and all-internal output give
    ``None`` (NanoClaw sends nothing for those). A result is *delivered* exactly when this is not ``None``.
    Meant for every outbound path: streamed results, scheduled-task results and ``send_message`` requests alike
    (NanoClaw does not strip the last, quirk §23.4).
    """
    if not raw:
        return None
    return strip_internal(raw) or None


def is_delivered(raw: str | None) -> bool:
    """True when the result ``raw`` has user-facing text (the runner's ``output_delivered``)."""
    return user_text(raw) is not None
