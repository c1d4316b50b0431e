"""Outbound policy: per-chat rate limit, send-retry backoff, reply prefix (nanoclaw-behaviour §10, §24.3)."""

from __future__ import annotations

import pytest

from services.gateway.outbound_policy import ChatRateLimiter, reply_prefix, reply_text, send_retry_delay


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


GROUP = "120363001@g.us"


def test_a_burst_goes_out_immediately_then_sends_are_spaced_at_the_sustained_rate():
    clock = FakeClock()
    limiter = ChatRateLimiter(messages_per_minute=20, burst=3, clock=clock)
    assert [limiter.reserve(GROUP) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve(GROUP) == pytest.approx(3.0)  # 20/min = one every 3 s


def test_reservations_queue_up_behind_each_other():
    limiter = ChatRateLimiter(messages_per_minute=20, burst=1, clock=FakeClock())
    assert [limiter.reserve(GROUP) for _ in range(4)] == pytest.approx([0.0, 3.0, 6.0, 9.0])


def test_tokens_refill_with_time_up_to_the_burst():
    clock = FakeClock()
    limiter = ChatRateLimiter(messages_per_minute=60, burst=2, clock=clock)
    limiter.reserve(GROUP), limiter.reserve(GROUP)
    assert limiter.delay(GROUP) == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.reserve(GROUP) == 0.0
    clock.now += 3600  # a long quiet spell refills only up to the burst
    assert [limiter.reserve(GROUP) for _ in range(3)] == pytest.approx([0.0, 0.0, 1.0])


def test_delay_peeks_without_booking_a_slot():
    limiter = ChatRateLimiter(messages_per_minute=20, burst=1, clock=FakeClock())
    assert limiter.delay(GROUP) == 0.0 and limiter.delay(GROUP) == 0.0
    assert limiter.reserve(GROUP) == 0.0
    assert limiter.delay(GROUP) == pytest.approx(3.0)


def test_each_chat_has_its_own_bucket():
    limiter = ChatRateLimiter(messages_per_minute=20, burst=1, clock=FakeClock())
    assert limiter.reserve(GROUP) == 0.0
    assert limiter.reserve("15551234567@s.whatsapp.net") == 0.0
    assert limiter.reserve(GROUP) == pytest.approx(3.0)


def test_a_reply_loop_is_slowed_to_the_sustained_rate():
    clock = FakeClock()
    limiter = ChatRateLimiter(messages_per_minute=20, burst=5, clock=clock)
    sent = 0
    while clock.now < 1000.0 + 600:  # ten minutes of a runaway loop that waits as told
        clock.now += limiter.reserve(GROUP)
        sent += 1
    assert sent <= 5 + 20 * 10 + 1


def test_idle_chats_are_forgotten_once_many_are_tracked():
    clock = FakeClock()
    limiter = ChatRateLimiter(messages_per_minute=60, burst=1, clock=clock, max_chats=2)
    limiter.reserve("a@g.us"), limiter.reserve("b@g.us")
    clock.now += 10  # a and b are full again
    limiter.reserve("c@g.us")
    assert set(limiter._buckets) == {"c@g.us"}


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (10, 0)])
def test_a_nonsensical_limit_is_refused(rate, burst):
    with pytest.raises(ValueError):
        ChatRateLimiter(messages_per_minute=rate, burst=burst)


def test_send_retry_backoff_doubles_from_five_seconds_and_is_capped_at_five_minutes():
    assert [send_retry_delay(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert send_retry_delay(10_000) == 300
    assert send_retry_delay(3, base=1, cap=3) == 3


def test_send_retry_attempts_start_at_one():
    with pytest.raises(ValueError):
        send_retry_delay(0)


def test_on_a_shared_number_replies_are_prefixed_with_the_assistant_name_in_groups_and_dms():
    assert reply_prefix("Andy", has_own_number=False) == "Andy: "
    assert reply_text("Hello", "Andy", has_own_number=False) == "Andy: Hello"


def test_with_its_own_number_the_assistant_sends_without_prefix():
    assert reply_prefix("Andy", has_own_number=True) == ""
    assert reply_text("Hello", "Andy", has_own_number=True) == "Hello"


def test_text_that_already_carries_the_prefix_is_not_prefixed_twice():
    assert reply_text("Andy: Hello", "Andy", has_own_number=False) == "Andy: Hello"
    assert reply_text("Andy:Hello", "Andy", has_own_number=False) == "Andy:Hello"
    assert reply_text("Andrew says hi", "Andy", has_own_number=False) == "Andy: Andrew says hi"


def test_queued_replies_keep_their_order_and_are_all_prefixed():
    queued = ["one", "two", "three"]
    assert [reply_text(t, "Andy", False) for t in queued] == ["Andy: one", "Andy: two", "Andy: three"]
