"""Subject naming for the event stream.

Scheme (documented for outside subscribers in docs/events.md)::

    nc.evt.<context>.<aggregate-type>.<aggregate-id-token>.<event-type>

``<aggregate-id-token>`` is the aggregate id made subject-safe by :func:`encode_token`: NATS splits
subjects on ``.`` and gives ``*`` and ``>`` wildcard meaning, and whitespace ends a token, so a WhatsApp
JID such as ``120363@g.us`` or a folder name could otherwise break the subject. The encoding is
reversible (:func:`decode_token`) and leaves common JID characters (``@``, ``:``, ``+``, ``-``, ``_``)
readable.
"""

from __future__ import annotations

import re

EVENT_PREFIX = "nc.evt"
"""Every domain event subject starts with this prefix; the event stream captures ``nc.evt.>``."""
DEAD_LETTER_PREFIX = "nc.dlq"
"""Dead-lettered messages: ``nc.dlq.<service>``."""
COMMAND_PREFIX = "nc.cmd"
"""Request/reply commands: ``nc.cmd.<service>.<command>``."""

EVENT_STREAM = "NC_EVENTS"
DEAD_LETTER_STREAM = "NC_DLQ"

_SAFE = re.compile(r"[A-Za-z0-9@:+_\-]")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
_ESCAPED = re.compile(r"~([0-9A-F]{2})")


def encode_token(value: str) -> str:
    """Encode an arbitrary id as one subject token.

    Characters outside ``[A-Za-z0-9@:+_-]`` become ``~XX`` per UTF-8 byte (upper-case hex); ``~``
    itself is escaped, so the mapping is one-to-one.

    Raises:
        ValueError: ``value`` is empty.
    """
    if not value:
        raise ValueError("an aggregate id must not be empty")
    out: list[str] = []
    for ch in value:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode())
    return "".join(out)


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`."""
    raw = bytearray()
    i = 0
    while i < len(token):
        m = _ESCAPED.match(token, i)
        if m:
            raw.append(int(m.group(1), 16))
            i = m.end()
        else:
            raw.extend(token[i].encode())
            i += 1
    return raw.decode()


def check_name(kind: str, value: str) -> str:
    """Validate a context, aggregate-type, event-type or service name used literally in a subject.

    Raises:
        ValueError: ``value`` is not ``[A-Za-z][A-Za-z0-9_-]*``.
    """
    if not _NAME.match(value):
        raise ValueError(f"{kind} {value!r} is not a valid subject token (letters, digits, _ and -; starts with a letter)")
    return value


def aggregate_subject(context: str, aggregate_type: str, aggregate_id: str, event_type: str = "*") -> str:
    """The subject of a commit (``event_type`` given) or, with the default ``*``, the wildcard that
    matches every commit of one aggregate (used for ``Nats-Expected-Last-Subject-Sequence-Subject``)."""
    check_name("context", context)
    check_name("aggregate type", aggregate_type)
    if event_type != "*":
        check_name("event type", event_type)
    return f"{EVENT_PREFIX}.{context}.{aggregate_type}.{encode_token(aggregate_id)}.{event_type}"


def event_filter(context: str = "*", aggregate_type: str = "*", event_type: str = "*") -> str:
    """A subscription filter, e.g. ``event_filter("chat", "message", "MessageReceived")``."""
    return f"{EVENT_PREFIX}.{context}.{aggregate_type}.*.{event_type}"


def parse_subject(subject: str) -> tuple[str, str, str, str]:
    """Split an event subject into ``(context, aggregate_type, aggregate_id, event_type)``.

    Raises:
        ValueError: the subject does not follow the event scheme.
    """
    parts = subject.split(".")
    if len(parts) != 6 or ".".join(parts[:2]) != EVENT_PREFIX:
        raise ValueError(f"{subject!r} is not an event subject ({EVENT_PREFIX}.<context>.<aggregate>.<id>.<event>)")
    return parts[2], parts[3], decode_token(parts[4]), parts[5]
