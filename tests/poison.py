"""Bad messages in the log, as a prompt-injected agent's forged reply or a buggy publisher would store them:
published with full-access credentials straight onto ``nc.evt.…`` subjects, around a valid commit."""

from __future__ import annotations

import json

from events.envelope import AggregateRef, Commit
from events.subjects import EVENT_STREAM

KINDS = ("garbage", "reply", "missing_field", "object_not_batch", "no_cloudevents_attributes", "unknown_type")
"""garbage bytes; a JSON object that is no CloudEvent (what the reply-subject attack wrote); a valid envelope
whose payload misses a required field; a JSON object instead of a batch; an event without CloudEvents
attributes; an event type not in the catalogue."""

REASONS = {"garbage": "not JSON", "reply": "not a CloudEvents batch", "missing_field": "misses required field",
           "object_not_batch": "not a CloudEvents batch", "no_cloudevents_attributes": "'id' is missing",
           "unknown_type": "not in the catalogue"}
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
