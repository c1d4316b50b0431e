"""Hypothesis strategies for bad input on the bus, derived from what the system declares about its input: the
event catalogue's pydantic models (events/catalogue) for messages of the log, the agents' tool schemas
(sandbox/agent/tools.py) for IPC requests.

Every event strategy draws a commit body that the consumers' full decode refuses (services/harness/runner.py's
``decode_commit`` raises ``PoisonMessage``): the draw is filtered by that oracle, so "bad" is never a guess.
:func:`hostile_valid_commit` draws the opposite, a commit that decodes, with hostile strings wherever a string
is allowed: what a service must survive although nothing forces it to refuse it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from itertools import count
from typing import Any

from hypothesis import assume, strategies as st

from events.catalogue.base import EventPayload
from services.harness.deadletter import COPY_LIMIT_BYTES
from services.harness.runner import PoisonMessage, decode_commit
from tests.poison import HOSTILE, NESTING

HOSTILE_STRINGS = (
    HOSTILE, "", " ", "\x00", "\r\n\r\n", "\ud800", "\udfff\ud800", "\u202e\u2066", "\ufeff", "\x1b]0;pwned\x07",
    "[bold red]:a:[/]", "'; DROP TABLE chats; --", "../../../etc/passwd", "${HOME}$(id)`id`", "%s%n%x",
    "nc.evt.>", "_INBOX.*", "*", ">", "a" * 5000, "😀" * 50, "\u0301" * 30, "NaN", "-0", "1e309",
)
"""Strings that break naive code: control characters, lone surrogates, bidi overrides, markup, SQL, paths,
shell, format strings, NATS wildcards, very long, combining marks, number-like."""

hostile_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(st.characters(exclude_categories=()), max_size=40),  # every code point, lone surrogates included
)

_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                     st.floats(allow_nan=False, allow_infinity=False), hostile_text)
json_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(hostile_text, inner, max_size=4)),
                           max_leaves=12)
"""Any JSON value, strings hostile."""

_BY_JSON_TYPE = {
    "string": hostile_text, "integer": st.integers(min_value=-(2**70), max_value=2**70),
    "number": st.floats(allow_nan=False, allow_infinity=False), "boolean": st.booleans(), "null": st.none(),
    "array": st.lists(_scalars, max_size=3), "object": st.dictionaries(hostile_text, _scalars, max_size=3),
}


@lru_cache
def field_types(cls: type[EventPayload]) -> dict[str, frozenset[str]]:
    """Field name → the JSON types its JSON schema allows (empty: anything, e.g. ``Any`` or an unresolved
    reference), from ``cls.model_json_schema()``."""
    schema = cls.model_json_schema()
    defs = schema.get("$defs", {})

    def types(node: dict[str, Any]) -> set[str]:
        if "$ref" in node:
            return types(defs.get(node["$ref"].rsplit("/", 1)[-1], {}))
        if "anyOf" in node or "oneOf" in node:
            out: set[str] = set()
            for option in node.get("anyOf", node.get("oneOf", [])):
                inner = types(option)
                if not inner:
                    return set()
                out |= inner
            return out
        kind = node.get("type")
        if kind is None and "enum" in node:
            return {json_type(v) for v in node["enum"]}
        out = {kind} if isinstance(kind, str) else set(kind or ())
        return out

    return {name: frozenset(types(prop)) for name, prop in schema.get("properties", {}).items()}


def json_type(value: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}[type(value)]


def required(cls: type[EventPayload]) -> list[str]:
    return [name for name, f in cls.model_fields.items() if f.is_required()]


def wrongly_typed(cls: type[EventPayload], name: str) -> st.SearchStrategy[Any]:
    """A value of a JSON type the field ``name`` does not allow (any value if it allows every type)."""
    allowed = field_types(cls).get(name, frozenset())
    if "number" in allowed:
        allowed = allowed | {"integer"}
    wrong = [s for t, s in _BY_JSON_TYPE.items() if t not in allowed] if allowed else []
    return st.one_of(wrong) if wrong else json_values


_ids = count(1)


def fresh_id(prefix: str = "fuzz") -> str:
    """A new aggregate id (a bad message on a live aggregate is another test: here each lands on its own)."""
    return f"{prefix}-{next(_ids)}"


def envelope(cls: type[EventPayload], aggregate_id: str, data: Any, **overrides: Any) -> dict[str, Any]:
    """A CloudEvent as :func:`events.envelope.new_commit` writes it, around ``data``."""
    n = next(_ids)
    event = {"specversion": "1.0", "id": f"fuzz-event-{n}", "source": "nanoclaw-bus/fuzz",
             "type": cls.cloudevents_type(), "subject": aggregate_id, "time": "2026-03-01T10:00:00Z",
             "datacontenttype": "application/json", "aggregatecontext": cls.context,
             "aggregatetype": cls.aggregate, "aggregateid": aggregate_id, "aggregateversion": 1,
             "eventtype": cls.__name__, "schemaversion": cls.schema_version, "correlationid": f"fuzz-event-{n}",
             "data": data}
    event.update(overrides)
    return event


def junk_data(cls: type[EventPayload]) -> st.SearchStrategy[dict[str, Any]]:
    """Every field of ``cls`` with a value of a wrong JSON type or any value."""
    names = list(cls.model_fields)
    return st.fixed_dictionaries({n: st.one_of(wrongly_typed(cls, n), json_values) for n in names})


@st.composite
def bad_data(draw, cls: type[EventPayload]) -> dict[str, Any]:
    """Data for ``cls`` that its model refuses: a required field missing, a field of the wrong JSON type, or an
    unknown (hostile) field."""
    data = draw(junk_data(cls))
    how = draw(st.sampled_from(["missing", "wrong_type", "unknown_field"]))
    if how == "missing" and required(cls):
        data.pop(draw(st.sampled_from(required(cls))))
    elif how == "wrong_type" and data:
        name = draw(st.sampled_from(sorted(data)))
        data[name] = draw(wrongly_typed(cls, name))
    else:
        data[draw(hostile_text.filter(lambda k: k not in cls.model_fields))] = draw(json_values)
    return data


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # ASCII: a lone surrogate is written as an escape, as any JSON writer may


BAD_COMMITS = ("garbage", "not_a_batch", "bad_data", "bad_attribute", "unknown_type", "deeply_nested", "oversized",
               "several_events_one_bad")
"""The kinds of :func:`bad_commit`."""


@st.composite
def bad_commit(draw, cls: type[EventPayload], aggregate_id: str, kind: str) -> bytes:
    """The body of a commit of ``kind`` (:data:`BAD_COMMITS`) on ``cls``'s aggregate that every consumer must
    refuse: ``garbage`` bytes; JSON that is ``not_a_batch``; ``bad_data`` that ``cls`` refuses (a required field
    missing, a value of the wrong JSON type, an unknown hostile field); a ``bad_attribute`` (a CloudEvents
    attribute missing or of any JSON value); an ``unknown_type``; data ``deeply_nested`` past the decoder's
    recursion limit; an ``oversized`` body past a dead letter's copy limit; ``several_events_one_bad``."""
    good_looking = envelope(cls, aggregate_id, draw(junk_data(cls)))
    if kind == "garbage":
        body = draw(st.binary(max_size=300))
    elif kind == "not_a_batch":
        body = _dumps(draw(st.one_of(st.just(good_looking), st.just([]), json_values.filter(
            lambda v: not (isinstance(v, list) and v and all(isinstance(i, dict) for i in v))))))
    elif kind == "bad_data":
        body = _dumps([envelope(cls, aggregate_id, draw(bad_data(cls)))])
    elif kind == "bad_attribute":
        name = draw(st.sampled_from(sorted(good_looking)))
        event = dict(good_looking)
        if draw(st.booleans()) and name not in ("specversion", "datacontenttype", "causationid", "correlationid"):
            del event[name]
        else:
            event[name] = draw(json_values)
        body = _dumps([event])
    elif kind == "unknown_type":
        name = draw(hostile_text)
        body = _dumps([{**good_looking, "eventtype": name, "type": f"nanoclaw.fuzz.{name}"}])
    elif kind == "deeply_nested":
        depth = draw(st.integers(min_value=NESTING, max_value=2 * NESTING))
        body = _dumps([good_looking]).replace(b'"data": {', b'"data": {"nest": ' + b"[" * depth + b"]" * depth + b", ", 1)
    elif kind == "oversized":
        size = draw(st.integers(min_value=COPY_LIMIT_BYTES + 1, max_value=COPY_LIMIT_BYTES * 3))
        body = _dumps([{**good_looking, "data": {**good_looking["data"], "padding": "x" * size}}])
    else:
        events = [envelope(cls, aggregate_id, draw(junk_data(cls)), aggregateversion=v) for v in (1, 2)]
        events[draw(st.integers(0, 1))]["data"] = draw(bad_data(cls))
        body = _dumps(events)
    assume(refused(body))
    return body


def refused(body: bytes) -> bool:
    """The oracle: the consumers' full decode refuses ``body`` (``PoisonMessage``, or anything else it raises:
    what the system does with that is what the tests check)."""
    try:
        decode_commit(body)
    except PoisonMessage:
        return True
    except Exception:  # noqa: BLE001 - e.g. a RecursionError the decoder lets through
        return True
    return False


@st.composite
def hostile_valid_commit(draw, cls: type[EventPayload], aggregate_id: str, like: dict[str, Any]) -> bytes:
    """A commit that decodes: the valid data ``like`` with each string field replaced by a hostile string where
    the model still accepts it."""
    data = dict(like)
    for name, value in like.items():
        if isinstance(value, str) and draw(st.booleans()):
            candidate = {**data, name: draw(hostile_text)}
            try:
                cls.model_validate(candidate)
            except ValueError:
                continue
            data = candidate
    return _dumps([envelope(cls, aggregate_id, data)])


def tool_schemas() -> dict[str, dict[str, Any]]:
    """Tool name → its input JSON schema, as the sandbox offers it to the model."""
    from sandbox.agent.tools import TOOLS
    return {name: schema for name, (_service, _description, schema) in TOOLS.items()}


@st.composite
def bad_request(draw, schema: dict[str, Any] | None) -> tuple[str, bytes]:
    """(kind, body) of a tool request: one the service cannot take as asked (``garbage``, ``not_an_object``,
    ``deeply_nested`` past any parser, a required argument missing, an argument of the wrong JSON type), or one
    it may take but must survive (a ``hostile_object`` of hostile names and values, an ``oversized`` argument).
    Derived from the tool's input schema (:func:`tool_schemas`)."""
    props = (schema or {}).get("properties", {})
    needed = (schema or {}).get("required", [])
    kinds = ["garbage", "not_an_object", "deeply_nested", "hostile_object", "oversized"]
    if needed:
        kinds.append("missing_argument")
    if props:
        kinds.append("wrong_type")
    kind = draw(st.sampled_from(kinds))
    if kind == "garbage":
        body = draw(st.binary(min_size=1, max_size=300).filter(lambda b: not _is_object(b)))
    elif kind == "not_an_object":
        body = _dumps(draw(json_values.filter(lambda v: not isinstance(v, dict))))
    elif kind == "deeply_nested":
        depth = draw(st.integers(min_value=NESTING, max_value=2 * NESTING))
        body = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "hostile_object":
        body = _dumps(draw(st.dictionaries(st.one_of(st.sampled_from(sorted(props) or ["x"]), hostile_text),
                                           json_values, max_size=6)))
    elif kind == "oversized":
        size = draw(st.integers(min_value=COPY_LIMIT_BYTES, max_value=COPY_LIMIT_BYTES * 3))
        body = _dumps({name: draw(hostile_text) + "x" * size for name in (sorted(props) or ["x"])[:1]})
    elif kind == "missing_argument":
        args = {n: draw(hostile_text) for n in props}
        args.pop(draw(st.sampled_from(needed)))
        body = _dumps(args)
    else:
        name = draw(st.sampled_from(sorted(props)))
        allowed = props[name].get("type")
        wrong = [s for t, s in _BY_JSON_TYPE.items() if t != allowed and t != "null"]
        body = _dumps({**{n: "x" for n in needed}, name: draw(st.one_of(wrong))})
    return kind, body


def _is_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False
