"""Reading a ``POST /v1/messages`` body: content type, UTF-8, JSON, an object, no unpaired surrogates.

Each failure is a :class:`~services.gateway.http_errors.RequestRefused` with the status and field of the
webhook's contract (README.md, "Chat"): ``415`` for a content type other than JSON (``field``: ``Content-Type``),
``400`` for bytes that are not UTF-8 (naming the JSON field whose string holds them when the rest parses, as a
client that mis-encodes ``text`` would send), ``400`` for text that is not JSON or not an object, ``400`` for a
string holding an unpaired UTF-16 surrogate (``"\\ud800"`` is valid JSON but not Unicode text; it could not be
stored or published). Schema errors (``422``) are the caller's, after this.
"""

from __future__ import annotations

import json
from typing import Any

from services.gateway.http_errors import RequestRefused

JSON_TYPES = ("application/json",)


def check_content_type(content_type: str) -> None:
    """``application/json`` or any ``application/*+json`` (parameters such as ``charset`` are ignored by the
    caller's parse: aiohttp gives the bare type).

    Raises:
        RequestRefused: 415 naming ``Content-Type``.
    """
    if content_type in JSON_TYPES or (content_type.startswith("application/") and content_type.endswith("+json")):
        return
    got = content_type or "none"
    raise RequestRefused(415, f"Content-Type must be application/json (got {got})", "Content-Type")


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object.

    Raises:
        RequestRefused: 400 as described in the module docstring.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRefused(400, f"body is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                             _field_holding_bad_bytes(raw)) from None
    body = _loads(text)
    if not isinstance(body, dict):
        raise RequestRefused(400, f"body must be a JSON object, got {_json_kind(body)}", None)
    path = _surrogate_path(body)
    if path is not None:
        raise RequestRefused(400, f"{path}: not valid Unicode text (an unpaired UTF-16 surrogate)", path)
    return body


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestRefused(400, f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", None) from None
    except ValueError as exc:  # an integer of more than 4300 digits (sys.get_int_max_str_digits)
        raise RequestRefused(400, f"body is not valid JSON: {exc}", None) from None
    except RecursionError:
        raise RequestRefused(400, "body is not valid JSON: nested too deeply", None) from None


def _field_holding_bad_bytes(raw: bytes) -> str | None:
    """The dotted path of the string holding the non-UTF-8 bytes, when the body parses once they are set aside
    (``surrogateescape`` turns each into a lone surrogate); None when they are outside any string."""
    try:
        body = json.loads(raw.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None
    return _surrogate_path(body) if isinstance(body, dict) else None


def _surrogate_path(body: dict[str, Any]) -> str | None:
    """The dotted path of the first string (key or value) holding a lone surrogate, or None. Iterative: a body
    nested as deep as ``json.loads`` allows must not exhaust the stack here."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _has_surrogate(value):
                return path
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        children = []
        for key, item in items:
            name = key.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(key, str) else str(key)
            here = f"{path}.{name}" if path else name
            if isinstance(key, str) and _has_surrogate(key):
                return here
            children.append((here, item))
        stack.extend(reversed(children))  # depth-first in document order: the first bad field is named
    return None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
