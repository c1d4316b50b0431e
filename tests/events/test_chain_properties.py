"""The chain verifier over generated logs (no server): an honest log has no finding, and any altered body,
dropped commit or swapped pair of one aggregate's commits is found, at or before the first position that
differs from the honest log."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from events.chain import ChainVerifier, HDR_CHAIN
from events.envelope import AggregateRef, new_commit
from events.store.jetstream import append_message
from tests.events.store_contract import CounterIncremented


def honest_log(owners: list[int]) -> list[tuple[str, dict, bytes]]:
    """Commits in the order given: ``owners[i]`` is the aggregate of the i-th commit."""
    heads: dict[int, tuple[int, str]] = {}
    log = []
    for seq, owner in enumerate(owners, 1):
        version, prev = heads.get(owner, (0, ""))
        commit = new_commit(AggregateRef("test", "counter", f"c{owner}"), [CounterIncremented(by=seq)],
                            version=version, source="test", msg_id=f"m{seq}")
        subject, headers, body = append_message(commit, expected_seq=0, prev_link=prev)
        heads[owner] = (version + 1, headers[HDR_CHAIN])
        log.append((subject, headers, body))
    return log


def verify(log) -> ChainVerifier:
    v = ChainVerifier()
    for seq, (subject, headers, body) in enumerate(log, 1):
        v.feed(seq, subject, headers, body)
    v.finish()
    return v


owners = st.lists(st.integers(0, 3), min_size=2, max_size=30)


@settings(max_examples=150, deadline=None)
@given(owners)
def test_an_honest_log_has_no_finding(owners):
    assert verify(honest_log(owners)).findings == []


@settings(max_examples=150, deadline=None)
@given(owners, st.data())
def test_any_altered_body_is_found_at_its_position(owners, data):
    log = honest_log(owners)
    k = data.draw(st.integers(0, len(log) - 1))
    subject, headers, body = log[k]
    log[k] = (subject, headers, body.replace(b'"by":', b'"by":1'))
    found = verify(log).first_failure
    assert found is not None and (found.seq, found.kind) == (k + 1, "altered")


@settings(max_examples=150, deadline=None)
@given(owners, st.data())
def test_a_dropped_commit_with_a_later_one_in_its_aggregate_is_found(owners, data):
    log = honest_log(owners)
    droppable = [i for i in range(len(log)) if owners[i] in owners[i + 1:]]
    if not droppable:
        return
    k = data.draw(st.sampled_from(droppable))
    found = verify(log[:k] + log[k + 1:]).first_failure
    later = owners.index(owners[k], k + 1)  # the aggregate's next commit, now one position earlier
    assert found is not None and (found.seq, found.kind) == (later, "missing")


@settings(max_examples=150, deadline=None)
@given(owners, st.data())
def test_two_swapped_commits_of_one_aggregate_are_found_where_the_first_now_stands(owners, data):
    log = honest_log(owners)
    pairs = [(i, j) for i in range(len(log)) for j in range(i + 1, len(log)) if owners[i] == owners[j]]
    if not pairs:
        return
    i, j = data.draw(st.sampled_from(pairs))
    log[i], log[j] = log[j], log[i]
    found = verify(log).first_failure
    assert found is not None and found.seq == i + 1 and found.kind in ("missing", "out of order")
