"""The agent prompt: pending messages as NanoClaw's XML (NanoClaw v1 ``router.ts formatMessages``, §8).

Shape, byte for byte::

    <context timezone="America/New_York" />
    <messages>
    <message sender="Alice" time="Jan 1, 2024, 1:30 PM">hello</message>
    <message sender="Bob" time="Jan 1, 2024, 1:31 PM" reply_to="42">
      <quoted_message from="Carol">Are you coming?</quoted_message>Yes, on my way!</message>
    </messages>

NanoClaw's quirk §23.2 (older pending messages silently dropped) is not reproduced here, nor announced: the
router hands every pending message over, in turns of at most ``max_messages_per_prompt`` (issue 13), so a
prompt never needs a notice of what it left out.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Sequence
from datetime import datetime, timezone as dt_timezone

from services.router.model import StoredMessage

FALLBACK_TIMEZONE = "UTC"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Names present in the tz database directory that JavaScript's Intl rejects; NanoClaw validates with Intl.
_NOT_IANA = frozenset({"localtime", "factory", "posixrules"})


def escape_xml(text: str | None) -> str:
    """Escape ``&``, ``<``, ``>`` and ``"`` (in that order, so entities are not double-escaped).

    ``'`` is deliberately left alone, as in NanoClaw ``escapeXml``: every attribute is double-quoted.
    ``None`` and ``""`` give ``""``.
    """
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


@functools.lru_cache(maxsize=1)
def _iana_names() -> dict[str, str]:
    # casefolded name -> canonical spelling. Intl accepts zone names in any letter case, zoneinfo only in
    # the file system's case, so we look the name up ourselves. Cached: listing the database reads disk.
    return {
        name.casefold(): name
        for name in zoneinfo.available_timezones()
        if name.casefold() not in _NOT_IANA
    }


def resolve_timezone(name: str | None) -> str:
    """Return the canonical IANA spelling of ``name`` if it is a valid zone, else ``"UTC"``.

    As NanoClaw v1 ``timezone.ts resolveTimezone``: names are matched case-insensitively
    (``"america/new_york"`` → ``"America/New_York"``); POSIX-style strings (``"IST-2"``, ``"XYZ+3"``),
    ``""`` and unknown names fall back to ``"UTC"``. Never raises.
    """
    if not name or not isinstance(name, str):
        return FALLBACK_TIMEZONE
    return _iana_names().get(name.casefold(), FALLBACK_TIMEZONE)


def is_valid_timezone(name: str | None) -> bool:
    """True if ``name`` is an IANA time zone name (any letter case), as NanoClaw ``isValidTimezone``."""
    return bool(name) and isinstance(name, str) and name.casefold() in _iana_names()


def format_local_time(timestamp: str, tz_name: str) -> str:
    """Render an ISO-8601 instant like en-US ``toLocaleString`` does in NanoClaw: ``"Jan 1, 2024, 1:30 PM"``.

    Options reproduced: year numeric, month short, day numeric, hour numeric (12-hour, midnight is 12),
    minute 2-digit, a plain space before AM/PM. ``tz_name`` goes through :func:`resolve_timezone`, so an
    invalid zone shows UTC. A timestamp without an offset is taken as UTC (stored timestamps always carry
    ``Z``); an unparseable one yields ``"Invalid Date"``, which is what ``new Date(bad).toLocaleString()``
    prints.
    """
    try:
        instant = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return "Invalid Date"
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt_timezone.utc)
    local = instant.astimezone(zoneinfo.ZoneInfo(resolve_timezone(tz_name)))
    hour = local.hour % 12 or 12
    meridiem = "AM" if local.hour < 12 else "PM"
    return f"{_MONTHS[local.month - 1]} {local.day}, {local.year}, {hour}:{local.minute:02d} {meridiem}"


def _format_message(message: StoredMessage, tz_name: str) -> str:
    time = escape_xml(format_local_time(message.timestamp, tz_name))
    # Truthiness, not "is not None": NanoClaw omits the attribute and the quote for empty strings too.
    reply_attr = (
        f' reply_to="{escape_xml(message.reply_to_message_id)}"' if message.reply_to_message_id else ""
    )
    quote = ""
    if message.reply_to_message_content and message.reply_to_sender_name:
        quote = (
            f'\n  <quoted_message from="{escape_xml(message.reply_to_sender_name)}">'
            f"{escape_xml(message.reply_to_message_content)}</quoted_message>"
        )
    return (
        f'<message sender="{escape_xml(message.sender_name)}" time="{time}"{reply_attr}>'
        f"{quote}{escape_xml(message.content)}</message>"
    )


def format_messages(messages: Sequence[StoredMessage], timezone: str) -> str:
    """Build the agent prompt for ``messages`` (chronological) in ``timezone`` (IANA name).

    Byte-identical to NanoClaw v1 ``formatMessages`` (see the module docstring for the shape): sender, time,
    reply id, quoted sender and all text are escaped with :func:`escape_xml`; an empty list gives ``<context …/>\\n<messages>\\n\\n</messages>``. The header names the *resolved* zone, so an
    invalid name shows ``UTC`` both in the header and in the times (NanoClaw resolves before calling, so the
    two agree there too).

    Args:
        messages: the messages to show, oldest first (one batch of ``selection.batches``).
        timezone: IANA zone name for the header and the times.
    """
    tz_name = resolve_timezone(timezone)
    header = f'<context timezone="{escape_xml(tz_name)}" />\n'
    body = "\n".join(_format_message(m, tz_name) for m in messages)
    return f"{header}<messages>\n{body}\n</messages>"
