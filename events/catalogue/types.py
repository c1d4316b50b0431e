"""Shared field types for payloads."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import BeforeValidator


def iso_utc(value: datetime | str | int | float) -> str:
    """Normalise a time to ISO-8601 UTC with milliseconds and ``Z`` (``2024-01-01T13:30:00.000Z``).

    This is the shape NanoClaw stores and compares as strings (nanoclaw-behaviour §15), so lexical order is
    time order. Accepts an aware datetime, an ISO string with offset, or epoch milliseconds (int/float).

    Raises:
        ValueError: a naive datetime or an unparseable string.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value / 1000, timezone.utc)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO-8601 time") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a time")
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no time zone; give UTC or an offset")
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


UtcTimestamp = Annotated[str, BeforeValidator(iso_utc)]
"""A time stored as an ISO-8601 UTC string with milliseconds (see :func:`iso_utc`)."""
