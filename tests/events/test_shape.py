"""The replay's cheap check of a commit (events/shape.py, projections.base.records) against the full decode."""

from __future__ import annotations

import json

import pytest

from events.envelope import AggregateRef, CloudEvent, decode_events, new_commit
from events.errors import InvalidEvent
from events.shape import OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES
from projections.base import records
from tests.events.store_contract import CounterIncremented
from tests.poison import KINDS, REASONS, bad_bodies

COMMIT = new_commit(AggregateRef("test", "counter", "a"), [CounterIncremented(by=1)], version=0, source="s")
EVENT = json.loads(COMMIT.encode()[2])[0]


def check(body: bytes):
    return records(1, "nc.evt.test.counter.a.CounterIncremented", None, body)


def test_the_checked_attributes_are_exactly_the_cloudevent_models_fields():
    fields = CloudEvent.model_fields
    assert {n for n, _ in REQUIRED_ATTRIBUTES} == {n for n, f in fields.items() if f.is_required()}
    assert {n for n, _ in OPTIONAL_ATTRIBUTES} == {n for n, f in fields.items() if not f.is_required()}


def test_a_valid_commit_passes_the_cheap_check_and_the_full_decode_alike():
    body = COMMIT.encode()[2]
    assert [r.event for r in check(body)] == [EVENT]
    assert decode_events(body)[0].payload() == CounterIncremented(by=1)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_bad_message_fails_the_cheap_check_naming_the_problem(kind):
    with pytest.raises(InvalidEvent, match=REASONS[kind]):
        check(bad_bodies(COMMIT, "by")[kind])


@pytest.mark.parametrize("body, reason", [
    (b"[]", "an empty array"),
    (json.dumps([EVENT, 7]).encode(), "event 1: an event must be a JSON object, not an integer"),
    (json.dumps([{**EVENT, "aggregateversion": 0}]).encode(), "must be 1 or more"),
    (json.dumps([{**EVENT, "aggregateversion": True}]).encode(), "'aggregateversion' is a boolean, not an integer"),
    (json.dumps([{**EVENT, "data": []}]).encode(), "'data' is an array, not an object"),
    (json.dumps([{**EVENT, "correlationid": 5}]).encode(), "'correlationid' is an integer"),
    (json.dumps([{**EVENT, "data": {"by": 1, "extra": 2}}]).encode(), r"unknown field\(s\) \['extra'\]"),
    (json.dumps([{**EVENT, "schemaversion": 2}]).encode(), "no upcaster from schema version 2"),
])
def test_the_cheap_check_refuses_what_the_full_decode_refuses(body, reason):
    with pytest.raises(InvalidEvent, match=reason):
        check(body)
    with pytest.raises(InvalidEvent):
        [e.payload() for e in decode_events(body)]


def test_a_single_event_object_is_not_a_commit_for_the_full_decode_either():
    with pytest.raises(InvalidEvent, match="not a CloudEvents batch"):
        decode_events(json.dumps(EVENT).encode())
