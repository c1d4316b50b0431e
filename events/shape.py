"""A cheap structural check that a message body is a commit of our envelope: what makes a message in the log
"not a valid commit" for every reader.

Why not :class:`events.envelope.CloudEvent` and the payload models (pydantic) alone? Read-model replays apply
every event of the log, and validating payloads costs about as much as ``json.loads`` itself (≈10 µs per
event). This check costs ≈1 µs and still rejects what would stop a projection or mislead it: not a non-empty
JSON array, an event that is not an object, a missing CloudEvents attribute or one of the wrong JSON type, and
(``catalogue=True``) an event type not in the catalogue or data that misses a required field or carries one
the payload does not know. Field *values* are not checked: a projection that cannot use one fails on it and
skips the commit (projections/runner.py), and service consumers validate every payload fully
(services/harness/runner.py). The full decode (:func:`events.envelope.decode_events`) runs this check first,
so pydantic's lax coercions (``true`` or ``"3"`` for a version) cannot make a consumer accept what replays
skip.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import events.catalogue  # noqa: F401  (registers every event type: an unimported one would look unknown)
from events.catalogue.base import EventPayload, payload_class
from events.errors import InvalidEvent, UnknownEventType

_NONE = type(None)

REQUIRED_ATTRIBUTES: tuple[tuple[str, type], ...] = (
    ("id", str), ("source", str), ("type", str), ("subject", str), ("time", str),
    ("aggregatecontext", str), ("aggregatetype", str), ("aggregateid", str), ("aggregateversion", int),
    ("eventtype", str), ("schemaversion", int), ("data", dict),
)
"""Attributes every event must carry, with their JSON type (``time`` is an RFC 3339 string)."""

OPTIONAL_ATTRIBUTES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("specversion", (str,)), ("datacontenttype", (str,)), ("causationid", (str, _NONE)), ("correlationid", (str, _NONE)),
)
"""Attributes an event may leave out, with the JSON types allowed when present."""

_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
               bool: "a boolean", _NONE: "null"}


def check_commit(body: bytes, *, catalogue: bool) -> list[dict[str, Any]]:
    """Parse a commit body and check its shape; return its events as plain dicts.

    Args:
        catalogue: also require each event type to be in the catalogue and its data to carry exactly the
            payload's fields (required ones present, no unknown ones). Off for readers that show any event.

    Raises:
        InvalidEvent: not JSON, nested too deeply to parse, not a non-empty JSON array, or an event fails the
            checks (the message names the event's index and the problem).
    """
    try:
        # UTF-8 as the contract says (json.loads would guess UTF-16 from a leading zero byte and say so)
        items = json.loads(body.decode())
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidEvent(f"commit body is not JSON: {exc}") from None
    except RecursionError:
        # The C decoder recurses once per array/object level and gives up at the interpreter's recursion limit
        # (1,000): not a ValueError, so without this a body of ``[[[[…`` stopped every reader of the log.
        raise InvalidEvent("commit body is nested too deeply to parse (over the JSON decoder's recursion "
                           f"limit of about {sys.getrecursionlimit()} levels)") from None
    if type(items) is not list or not items:
        raise InvalidEvent(f"commit body is {'an empty array' if items == [] else json_name(items)}, not a "
                           "CloudEvents batch (a non-empty array)")
    for index, item in enumerate(items):
        try:
            _check_envelope(item)
            if catalogue:
                _check_data(item)
        except InvalidEvent as exc:
            raise InvalidEvent(f"event {index}: {exc}") from None
    return items


def _check_envelope(item: Any) -> None:
    # Exact type checks (``type(x) is int``): ``json.loads`` yields exact types, and a boolean must not pass for
    # a version number.
    if type(item) is not dict:
        raise InvalidEvent(f"an event must be a JSON object, not {json_name(item)}")
    get = item.get
    for name, kind in REQUIRED_ATTRIBUTES:
        if type(get(name)) is not kind:
            problem = "is missing" if name not in item else f"is {json_name(item[name])}, not {_JSON_NAMES[kind]}"
            raise InvalidEvent(f"CloudEvents attribute {name!r} {problem}")
    for name, kinds in OPTIONAL_ATTRIBUTES:
        if type(get(name, "")) not in kinds:  # absent: "" passes (every optional attribute may be a string)
            raise InvalidEvent(f"CloudEvents attribute {name!r} is {json_name(item[name])}")
    if item["aggregateversion"] < 1 or item["schemaversion"] < 1:
        raise InvalidEvent("aggregateversion and schemaversion must be 1 or more")


def _check_data(item: dict[str, Any]) -> None:
    event_type = item["eventtype"]
    cls, required, known = _PAYLOADS.get(event_type) or _payload_fields(event_type)
    data = item["data"]
    if item["schemaversion"] != cls.schema_version:
        data = cls.upcast(dict(data), item["schemaversion"])  # raises InvalidEvent for an unknown version
    keys = data.keys()
    if not required <= keys:
        raise InvalidEvent(f"{event_type} data misses required field(s) {sorted(required - keys)}")
    if not keys <= known:
        raise InvalidEvent(f"{event_type} data has unknown field(s) {sorted(keys - known)}")


_PAYLOADS: dict[str, tuple[type[EventPayload], frozenset[str], frozenset[str]]] = {}
"""Event type → (payload class, required field names, all field names), filled on first sight (one dict
lookup per event on the replay path)."""


def _payload_fields(event_type: str) -> tuple[type[EventPayload], frozenset[str], frozenset[str]]:
    try:
        cls = payload_class(event_type)
    except UnknownEventType as exc:
        raise InvalidEvent(str(exc)) from None
    fields = cls.model_fields
    _PAYLOADS[event_type] = entry = (cls, frozenset(n for n, f in fields.items() if f.is_required()), frozenset(fields))
    return entry


def json_name(value: Any) -> str:
    """How JSON calls the type of a decoded value ('an object', 'a string', …), for error messages."""
    return _JSON_NAMES.get(type(value), type(value).__name__)
