"""docs/events.md is the subscriber contract: it must list every event type with exactly its fields."""

from __future__ import annotations

import re
from pathlib import Path

import events.catalogue  # noqa: F401  (registers every event)
from events.catalogue.base import all_event_types

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def documented() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^#### `?([A-Z][A-Za-z]+)`?\s*$", line)
        if heading:
            current = heading.group(1)
            out[current] = set()
            continue
        field = re.match(r"^\| `([a-z_]+)` \|", line)
        if field and current:
            out[current].add(field.group(1))
        if line.startswith("## ") or line.startswith("### "):
            current = None
    return out


def test_every_event_type_is_documented_with_exactly_its_fields():
    catalogue = {name: set(cls.model_fields) for name, cls in all_event_types().items()
                 if cls.__module__.startswith("events.catalogue")}
    docs = documented()
    assert sorted(set(catalogue) - set(docs)) == [], "event types missing from docs/events.md"
    assert sorted(set(docs) - set(catalogue)) == [], "docs/events.md lists event types that do not exist"
    wrong = {name: (sorted(docs[name] ^ fields)) for name, fields in catalogue.items() if docs[name] != fields}
    assert wrong == {}, "fields differ between the models and docs/events.md"
