"""Pieces of the tools' JSON input schemas (tools.py, os_tools.py)."""

from __future__ import annotations

from typing import Any

STR = {"type": "string"}


def obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An object schema. A full JSON schema, not the SDK's ``{name: type}`` shorthand, which makes every
    parameter required."""
    return {"type": "object", "properties": properties, "required": required}
