"""Metering usage from SSE and JSON bodies as they pass, and pricing it."""

from __future__ import annotations

import json

import pytest

from services.broker.pricing import DEFAULT, PRICES, cost_usd, family_version, price_for
from services.broker.usage import MAX_LINE, Usage, UsageMeter


def sse(*events: dict) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


STREAM = sse(
    {"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-5-20250929", "usage": {
        "input_tokens": 120, "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 5000, "output_tokens": 1,
        "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500}}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "message_delta in text"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 40}},
    {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 95, "input_tokens": None}},
    {"type": "message_stop"},
)
EXPECTED = Usage(120, 95, 2000, 5000, 500, "claude-sonnet-4-5-20250929", "msg_1")


@pytest.mark.parametrize("size", [1, 2, 7, 64, len(STREAM)])
def test_sse_usage_is_read_whatever_the_chunk_boundaries(size):
    meter = UsageMeter("text/event-stream; charset=utf-8")
    for i in range(0, len(STREAM), size):
        meter.feed(STREAM[i:i + size])
    assert meter.finish() == EXPECTED


def test_crlf_line_endings_and_events_without_an_event_line_are_understood():
    body = STREAM.replace(b"\n", b"\r\n").replace(b"event: message_delta\r\n", b"")
    meter = UsageMeter("text/event-stream")
    meter.feed(body)
    assert meter.finish() == EXPECTED


def test_an_over_long_line_is_skipped_without_losing_later_usage():
    huge = sse({"type": "content_block_delta", "delta": {"text": "x" * (MAX_LINE + 10)}})
    body = huge + STREAM
    meter = UsageMeter("text/event-stream")
    for i in range(0, len(body), 4096):
        meter.feed(body[i:i + 4096])
    assert meter.finish() == EXPECTED and len(meter._buf) == 0


def test_a_json_body_gives_its_usage_and_a_broken_one_gives_zero():
    body = json.dumps({"id": "msg_2", "type": "message", "model": "claude-haiku-4-5", "usage": {
        "input_tokens": 11, "output_tokens": 3, "cache_read_input_tokens": None}}).encode()
    meter = UsageMeter("application/json")
    meter.feed(body[:10])
    meter.feed(body[10:])
    assert meter.finish() == Usage(11, 3, 0, 0, 0, "claude-haiku-4-5", "msg_2")
    broken = UsageMeter("application/json")
    broken.feed(body[:20])
    assert broken.finish() == Usage()
    other = UsageMeter("text/plain")
    other.feed(body)
    assert other.finish() == Usage()


@pytest.mark.parametrize("model, family", [
    ("claude-opus-5-5", ("opus", "5.5")), ("claude-opus-5-5[1m]", ("opus", "5.5")),
    ("claude-sonnet-4-5-20250929", ("sonnet", "4.5")), ("claude-opus-4-20250514", ("opus", "4")),
    ("claude-3-5-haiku-20241022", ("haiku", "3.5")), ("claude-3-haiku-20240307", ("haiku", "3")),
    ("claude-3-7-sonnet-latest", ("sonnet", "3.7")), ("CLAUDE-HAIKU-5-5", ("haiku", "5.5")),
    ("gpt-4o", None), ("claude", None),
])
def test_model_ids_map_to_a_family_and_version(model, family):
    assert family_version(model) == family


def test_the_cost_of_a_call_matches_the_claude_cli_for_the_stubs_usage():
    # stack-notes §2.6: the CLI reported cost 0.00018 for 10 input + 7 output tokens on claude-opus-5-5.
    assert cost_usd("claude-opus-5-5", Usage(input_tokens=10, output_tokens=7)) == pytest.approx(0.00018)


def test_cache_writes_and_reads_are_priced_by_kind():
    # Sonnet 4.5: input 3, output 15, 5m write 3.75, 1h write 6, read 0.30 USD/MTok
    expected = (120 * 3 + 95 * 15 + 1500 * 3.75 + 500 * 6 + 5000 * 0.30) / 1e6
    assert cost_usd(EXPECTED.model, EXPECTED) == pytest.approx(expected)
    no_split = Usage(cache_creation_input_tokens=1000)
    assert cost_usd("claude-sonnet-4-5", no_split) == pytest.approx(1000 * 3.75 / 1e6)


def test_long_prompts_switch_to_the_long_context_rates():
    short = Usage(input_tokens=100_000, output_tokens=1000)
    long = Usage(input_tokens=60_000, cache_read_input_tokens=40_001, output_tokens=1000)
    assert cost_usd("claude-haiku-5-5", short) == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    assert cost_usd("claude-haiku-5-5", long) == pytest.approx((60_000 * 0.50 + 40_001 * 0.05 + 1000 * 2.50) / 1e6)


def test_an_unknown_model_costs_the_highest_known_rates_and_is_logged_once(caplog):
    assert DEFAULT.input == max(p.input for p in PRICES.values()) and DEFAULT.output >= 50
    with caplog.at_level("WARNING", logger="nanoclaw.broker.pricing"):
        assert price_for("claude-newfamily-9") is DEFAULT
        assert price_for("claude-newfamily-9") is DEFAULT
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "claude-newfamily-9" in caplog.records[0].getMessage()
    for model in ("claude-opus-5-5", "claude-sonnet-5", "claude-haiku-4-5", "claude-fable-5-1"):
        assert cost_usd(model, Usage(1000, 1000)) <= cost_usd("claude-newfamily-9", Usage(1000, 1000))
