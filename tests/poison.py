"""Bad messages in the log, as a prompt-injected agent's forged reply or a buggy publisher would store them:
published with full-access credentials straight onto ``nc.evt.…`` subjects, around a valid commit."""

from __future__ import annotations

import json

from events.envelope import AggregateRef, Commit
from events.subjects import EVENT_STREAM

KINDS = ("garbage", "reply", "missing_field", "object_not_batch", "no_cloudevents_attributes", "unknown_type",
         "deeply_nested", "oversized", "hostile_strings")
"""garbage bytes; a JSON object that is no CloudEvent (what the reply-subject attack wrote); a valid envelope
whose payload misses a required field; a JSON object instead of a batch; an event without CloudEvents
attributes; an event type not in the catalogue; data nested deeper than any JSON parser recurses (Python's
raises ``RecursionError``, not ``ValueError``); a body larger than a dead letter copies
(:data:`OVERSIZED_BYTES`); a field named and valued with :data:`HOSTILE` (control characters, a lone
surrogate, markup: what must never reach a header, a log line or a terminal as is)."""

HOSTILE = "\r\nNc-Error: forged\x00\ud800\u202e[bold]:a:\x1b[31m' OR 1=1; --"
"""A string no header, terminal or SQL statement should take as is (a lone surrogate cannot even be UTF-8)."""

NESTING = 100_000
"""How deep :data:`KINDS`' ``deeply_nested`` body nests: far past Python's recursion limit (1,000 by default;
hypothesis raises it for the process while it generates, so a few thousand levels may parse in a test)."""

OVERSIZED_BYTES = 300_000
"""The size of the ``oversized`` body's padding: over a dead letter's copy limit (256 KiB,
services/harness/deadletter.py), under the test server's 1 MB ``max_payload``."""

REASONS = {"garbage": "not JSON", "reply": "not a CloudEvents batch", "missing_field": "misses required field",
           "object_not_batch": "not a CloudEvents batch", "no_cloudevents_attributes": "'id' is missing",
           "unknown_type": "not in the catalogue", "deeply_nested": "nested too deeply",
           "oversized": "has unknown field", "hostile_strings": "has unknown field"}
"""A phrase each kind's skip reason contains (the projections' cheap check words them)."""


def bad_bodies(like: Commit, missing: str) -> dict[str, bytes]:
    """The body of each :data:`KINDS` entry, derived from the valid one-event commit ``like``; ``missing`` is a
    required payload field to leave out."""
    event = json.loads(like.encode()[2])[0]
    dumps = lambda value: json.dumps(value).encode()  # noqa: E731
    return {
        "garbage": b"\x00\xff{not json",
        "reply": dumps({"ok": True, "result": []}),
        "missing_field": dumps([{**event, "data": {k: v for k, v in event["data"].items() if k != missing}}]),
        "object_not_batch": dumps(event),
        "no_cloudevents_attributes": dumps([{"eventtype": event["eventtype"], "data": event["data"]}]),
        "unknown_type": dumps([{**event, "eventtype": "NoSuchEvent", "type": "nanoclaw.test.NoSuchEvent"}]),
        "deeply_nested": dumps([{**event, "data": {**event["data"], missing: "@"}}]).replace(
            b'"@"', b"[" * NESTING + b"]" * NESTING),
        "oversized": dumps([{**event, "data": {**event["data"], "padding": "x" * OVERSIZED_BYTES}}]),
        "hostile_strings": dumps([{**event, "data": {**event["data"], HOSTILE: HOSTILE}}]),
    }


async def publish_bad(nc, like: Commit, missing: str) -> dict[str, int]:
    """Publish every kind of bad message, each on its own aggregate of ``like``'s type (so valid commits to
    ``like``'s aggregate keep their expected sequence). Returns kind → stream sequence."""
    seqs = {}
    agg = like.aggregate
    for kind, body in bad_bodies(like, missing).items():
        subject = AggregateRef(agg.context, agg.type, f"bad-{kind}").subject(like.events[0].eventtype)
        ack = await nc.jetstream().publish(subject, body, headers={"Content-Type": "application/cloudevents-batch+json"},
                                           stream=EVENT_STREAM)
        seqs[kind] = ack.seq
    return seqs
