"""The model proxy's allowlist and its rate of recorded refusals, as pure functions (the proxy on a real
server is tests/broker/test_broker_proxy.py)."""

from __future__ import annotations

import pytest

from services.broker.proxy_policy import MAX_SHOWN_PATH, RefusalThrottle, Target, forwarded_endpoint


@pytest.mark.parametrize("method, target, endpoint", [
    ("POST", "/v1/messages", "messages"),
    ("POST", "/v1/messages?beta=true", "messages"),
    ("POST", "/v1/messages/count_tokens?beta=true", "count_tokens"),
    ("GET", "/v1/messages", None),
    ("post", "/v1/messages", None),
    ("POST", "/v1/messages/batches", None),
    ("POST", "/v1/messages/", None),
    ("POST", "/v1/messages%2F..%2Ffiles", None),
    ("POST", "/v1/messages?x#/../../files", None),
    ("POST", "/v1/messages#", None),
    ("POST", "http://api.anthropic.com/v1/messages", None),
])
def test_only_the_exact_method_and_raw_path_of_an_agent_endpoint_is_forwarded(method, target, endpoint):
    assert forwarded_endpoint(method, Target.of(target)) == endpoint


def test_a_shown_path_drops_the_query_marks_a_fragment_and_is_cut_short():
    assert Target.of("/v1/files?key=secret").shown == "/v1/files"
    assert Target.of("/v1/messages?key=secret#/../files").shown == "/v1/messages#…"
    assert Target.of("/" + "a" * 500).shown == "/" + "a" * (MAX_SHOWN_PATH - 1) + "…"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refusals_are_recorded_in_a_burst_then_one_per_interval_and_the_next_record_counts_the_skipped():
    clock = Clock()
    throttle = RefusalThrottle(per_minute=2, clock=clock)
    assert [throttle.admit("run-1") for _ in range(5)] == [0, 0, None, None, None]
    assert throttle.admit("run-2") == 0  # each run has its own allowance
    clock.now += 29
    assert throttle.admit("run-1") is None  # 2 per minute: the next one after 30 s
    clock.now += 1
    assert throttle.admit("run-1") == 4  # recorded, saying 4 were not
    assert throttle.admit("run-1") is None
    clock.now += 600
    assert [throttle.admit("run-1") for _ in range(3)] == [1, 0, None]  # refilled to the burst, no more


def test_the_throttle_forgets_the_least_recently_refused_run_first():
    throttle = RefusalThrottle(per_minute=1, clock=Clock(), max_runs=2)
    assert [throttle.admit(r) for r in ("a", "b", "a", "c")] == [0, 0, None, 0]
    assert throttle.admit("a") is None and throttle.admit("b") == 0  # b was forgotten, a was not


def test_a_throttle_that_records_nothing_is_refused():
    with pytest.raises(ValueError, match="per_minute"):
        RefusalThrottle(per_minute=0)
