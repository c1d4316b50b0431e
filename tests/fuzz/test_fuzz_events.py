"""Fuzzing the log (real nats-server, the whole system as `nanoclaw up` runs it): malformed, oversized, wrongly
typed and hostile commits, drawn from the event catalogue's models (tests/fuzz/strategies.py), published with
the owning service's own credentials on every aggregate subject a service consumes. After each one a barrier
(tests/fuzz/system.py) must get through every consumer: every service stays up, every consumer of the subject
dead-letters the bad message with an error event; after a restart of every service nothing is dead-lettered
twice and events still flow; at the end the projections service has recorded every message its read models
skipped, so ``audit verify`` passes and names them."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from events.catalogue import payload_class
from events.envelope import CONTENT_TYPE, AggregateRef
from events.errors import InvalidEvent
from events.shape import check_commit
from projections.audit import verify_report
from projections.catalog import all_projections
from services.projector.service import read_model_path
from tests.fuzz.strategies import BAD_COMMITS, bad_commit, fresh_id, hostile_valid_commit, refused
from tests.fuzz.system import CONSUMERS, SharedSystem
from tests.support import eventually, projected

EXAMPLES = 15
"""Bad commits per kind and run (one barrier each: about 0.2 s an example here)."""

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])

published: dict[int, tuple[str, bytes]] = {}
"""Stream seq → (kind, body) of every bad commit this module published."""


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    system = SharedSystem(tmp_path_factory.mktemp("fuzz-events")).start()
    yield system
    system.stop()


@pytest.mark.parametrize("kind", BAD_COMMITS)
@FUZZ
@given(data=st.data())
def test_every_bad_commit_on_a_consumed_subject_is_dead_lettered_by_each_consumer_and_later_events_flow(shared, kind, data):
    event_type = data.draw(st.sampled_from(sorted({t for n in CONSUMERS for t in shared.handled(n)})), label="type")
    cls = payload_class(event_type)
    aggregate_id = aggregate_id_for(cls)
    body = data.draw(bad_commit(cls, aggregate_id, kind), label="commit")
    subject = AggregateRef(cls.context, cls.aggregate, aggregate_id).subject(event_type)
    seq = shared.run(shared.publish(subject, body, headers={"Content-Type": CONTENT_TYPE}))
    consumers = {n for n in CONSUMERS if shared.receives(n, cls)}
    published[seq] = (kind, body)
    barrier = shared.run(shared.barrier())
    recorded = shared.run(shared.dead_lettered_by())
    assert consumers <= recorded.get(seq, set()), (kind, subject, consumers, recorded.get(seq))
    assert not any(recorded.get(s) for s in barrier.values()), "a barrier event was dead-lettered"


def aggregate_id_for(cls) -> str:
    """A fresh aggregate id, except where the subject names its only writer: a service's dead letters are on
    ``system.deadletter.<service>`` and no other service may write there (services/harness/natsperms.py)."""
    return "scheduler" if (cls.context, cls.aggregate) == ("system", "deadletter") else fresh_id()


LIKE = {
    "MessageReceived": {"channel": "http", "chat_jid": "http:fuzz", "message_id": "m1", "sender": "eve",
                        "sender_name": "Eve", "text": "hi", "timestamp": "2026-03-01T10:00:00.000Z",
                        "chat_name": "Fuzz", "reply_to_text": "earlier"},
    "AgentOutputProduced": {"run_id": "r1", "chat_jid": "http:fuzz", "group_folder": "fuzz", "text": "hello",
                            "session_id": "s1", "error": "none"},
    "AgentRunFinished": {"run_id": "r1", "chat_jid": "http:fuzz", "group_folder": "fuzz", "status": "failed",
                         "error": "boom"},
    "OutboundMessageRequested": {"channel": "http", "chat_jid": "http:fuzz", "text": "reply", "group_folder": "fuzz",
                                 "run_id": "r1", "reply_to_message_id": "m1"},
}
"""A valid payload per event type whose strings :func:`hostile_valid_commit` replaces (types that start no run)."""


@pytest.mark.parametrize("event_type", sorted(LIKE))
@settings(FUZZ, max_examples=5)
@given(data=st.data())
def test_a_valid_commit_full_of_hostile_strings_is_settled_by_every_consumer_and_later_events_flow(shared, event_type,
                                                                                                   data):
    cls = payload_class(event_type)
    aggregate_id = fresh_id()
    body = data.draw(hostile_valid_commit(cls, aggregate_id, LIKE[event_type]), label="commit")
    assert not refused(body)
    subject = AggregateRef(cls.context, cls.aggregate, aggregate_id).subject(event_type)
    shared.run(shared.publish(subject, body, headers={"Content-Type": CONTENT_TYPE}))
    shared.run(shared.barrier())  # handled or dead-lettered, never stuck; every service up, every read model past it


def test_after_a_restart_nothing_is_dead_lettered_twice_and_events_still_flow(shared):
    assert published, "the fuzz test above ran first and published bad commits"
    before = shared.run(dead_letter_records(shared))
    shared.restart()
    shared.run(shared.barrier())
    after = shared.run(dead_letter_records(shared))
    assert after == before and all(n == 1 for n in after.values()), after


async def dead_letter_records(shared) -> Counter:
    """(service, stream seq) → how many valid ``MessageDeadLettered`` events name it (the bad ones this fuzz
    published on a dead-letter subject are not records)."""
    counts: Counter = Counter()
    async for commit in shared.store.read():
        for event in commit.events:
            if event.eventtype == "MessageDeadLettered":
                try:
                    record = event.payload()
                except InvalidEvent:
                    continue
                counts[(record.service, record.stream_seq)] += 1
    return counts


def test_afterwards_every_skipped_message_is_recorded_and_audit_verify_passes(shared):
    path = read_model_path(shared.host.settings.data_dir)
    last = shared.run(shared.store.last_seq())
    shared.run(eventually(lambda: projected(path, last), timeout=30))

    async def report():
        return await verify_report(shared.store, path, all_projections())

    async def all_recorded() -> bool:
        return not (await report()).unrecorded

    shared.run(eventually(all_recorded, timeout=30))
    result = shared.run(report())
    assert result.ok, result
    skipped = {m.seq for m in result.skipped}
    # What the replays' cheap check refuses is skipped by every read model; a value of the wrong type may pass it
    # and be applied (or make one projection skip the commit): events/shape.py.
    assert {seq for seq, (_, body) in published.items() if not passes_cheap_check(body)} <= skipped


def passes_cheap_check(body: bytes) -> bool:
    try:
        check_commit(body, catalogue=True)
    except InvalidEvent:
        return False
    return True
