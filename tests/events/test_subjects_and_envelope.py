"""Subject encoding and the CloudEvents envelope."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from events.envelope import AggregateRef, CONTENT_TYPE, decode_events, new_commit
from events.errors import InvalidEvent
from events.subjects import aggregate_subject, decode_token, encode_token, parse_subject
from tests.events.store_contract import CounterIncremented


@given(st.text(min_size=1))
def test_any_id_encodes_to_one_safe_subject_token_and_back(value):
    token = encode_token(value)
    assert not any(c in token for c in ".*> \t\r\n") and token
    assert decode_token(token) == value


def test_whatsapp_jids_stay_readable_in_subjects():
    assert encode_token("120363041234@g.us") == "120363041234@g~2Eus"
    assert aggregate_subject("chat", "chat", "15551234567@s.whatsapp.net", "ChatNameSynced") == \
        "nc.evt.chat.chat.15551234567@s~2Ewhatsapp~2Enet.ChatNameSynced"
    assert parse_subject("nc.evt.chat.chat.1@g~2Eus.X") == ("chat", "chat", "1@g.us", "X")


def test_an_empty_id_or_a_bad_name_is_refused():
    with pytest.raises(ValueError, match="empty"):
        encode_token("")
    with pytest.raises(ValueError, match="not a valid subject token"):
        aggregate_subject("chat.x", "chat", "1")


def test_a_commit_is_a_cloudevents_batch_an_outside_tool_can_read_without_our_code():
    commit = new_commit(AggregateRef("test", "counter", "a.b"), [CounterIncremented(by=1), CounterIncremented(by=2)],
                        version=4, source="router", msg_id="m-1")
    subject, headers, body = commit.encode()
    assert subject == "nc.evt.test.counter.a~2Eb.CounterIncremented"
    assert headers["Content-Type"] == CONTENT_TYPE and headers["Nats-Msg-Id"] == "m-1"
    assert headers["Nc-Aggregate-Version"] == "6" and headers["Nc-Event-Types"] == "CounterIncremented,CounterIncremented"
    events = json.loads(body)
    required = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype"}
    assert all(required <= set(e) for e in events)
    first = events[0]
    assert (first["specversion"], first["type"], first["subject"], first["source"]) == \
        ("1.0", "nanoclaw.test.CounterIncremented", "a.b", "nanoclaw-bus/router")
    assert [e["aggregateversion"] for e in events] == [5, 6] and first["data"] == {"by": 1}
    assert first["correlationid"] == first["id"] and events[1]["correlationid"] == events[1]["id"]


def test_event_ids_are_derived_from_the_msg_id_so_a_retry_produces_the_same_events():
    ref = AggregateRef("test", "counter", "a")
    one = new_commit(ref, [CounterIncremented(by=1)], version=0, source="s", msg_id="k")
    two = new_commit(ref, [CounterIncremented(by=1)], version=0, source="s", msg_id="k")
    assert one.events[0].id == two.events[0].id


def test_causation_and_correlation_follow_the_causing_event():
    ref = AggregateRef("test", "counter", "a")
    cause = new_commit(ref, [CounterIncremented(by=1)], version=0, source="s").events[0]
    effect = new_commit(ref, [CounterIncremented(by=2)], version=1, source="s", causation=cause).events[0]
    assert effect.causationid == cause.id and effect.correlationid == cause.correlationid


def test_a_body_that_is_not_a_cloudevents_batch_is_an_invalid_event():
    with pytest.raises(InvalidEvent, match="not JSON"):
        decode_events(b"{oops")
    with pytest.raises(InvalidEvent, match="event 0: CloudEvents attribute 'source' is missing"):
        decode_events(b'[{"id": "x"}]')
    with pytest.raises(InvalidEvent, match="an empty array, not a CloudEvents batch"):
        decode_events(b"[]")


def test_a_payload_of_the_wrong_aggregate_is_refused():
    with pytest.raises(ValueError, match="belongs to test.counter"):
        new_commit(AggregateRef("chat", "message", "x"), [CounterIncremented(by=1)], version=0, source="s")
