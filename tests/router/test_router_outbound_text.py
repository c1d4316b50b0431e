"""Agent output post-processing (NanoClaw v1 formatting.test.ts stripInternalTags/formatOutbound cases, and
the WhatsApp channel's "Andy: " prefix cases of whatsapp.test.ts; §10)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.router.outbound_text import format_outbound_prefix, outbound_text, strip_internal

# --- stripInternalTags ----------------------------------------------------------------------------


def test_strip_internal_removes_a_single_line_block_and_keeps_both_spaces() -> None:
    assert strip_internal("hello <internal>secret</internal> world") == "hello  world"


def test_strip_internal_removes_multi_line_blocks() -> None:
    assert strip_internal("hello <internal>\nsecret\nstuff\n</internal> world") == "hello  world"


def test_strip_internal_removes_every_block() -> None:
    assert strip_internal("<internal>a</internal>hello<internal>b</internal>") == "hello"


def test_strip_internal_of_only_internal_text_is_empty() -> None:
    assert strip_internal("<internal>only this</internal>") == ""


def test_strip_internal_is_non_greedy_and_keeps_text_between_blocks() -> None:
    assert strip_internal("<internal>a</internal> keep <internal>b</internal>") == "keep"


def test_strip_internal_trims_surrounding_whitespace() -> None:
    assert strip_internal("\n  <internal>x</internal>\n  answer  \n") == "answer"


def test_strip_internal_leaves_an_unclosed_tag_alone() -> None:
    assert strip_internal("<internal>never closed") == "<internal>never closed"


def test_strip_internal_is_case_sensitive_like_nanoclaw() -> None:
    assert strip_internal("<INTERNAL>x</INTERNAL>") == "<INTERNAL>x</INTERNAL>"


def test_strip_internal_removes_a_block_spliced_together_by_an_earlier_removal() -> None:
    # One pass (NanoClaw) would leave "<internal>secret</internal>" and send it.
    assert strip_internal("<inte<internal>x</internal>rnal>secret</internal>ok") == "ok"


# --- formatOutbound -------------------------------------------------------------------------------


def test_outbound_text_passes_plain_text_through() -> None:
    assert outbound_text("hello world") == "hello world"


def test_outbound_text_is_none_when_everything_is_internal() -> None:
    assert outbound_text("<internal>hidden</internal>") is None


def test_outbound_text_strips_internal_thinking_before_the_answer() -> None:
    assert outbound_text("<internal>thinking</internal>The answer is 42") == "The answer is 42"


def test_outbound_text_is_none_for_missing_empty_or_blank_output() -> None:
    assert outbound_text(None) is None
    assert outbound_text("") is None
    assert outbound_text(" \n\t ") is None


# --- WhatsApp channel prefix ----------------------------------------------------------------------


def test_shared_number_prefixes_group_messages_with_assistant_name() -> None:
    assert format_outbound_prefix("Hello", "Andy", has_own_number=False) == "Andy: Hello"


def test_prefix_uses_the_configured_assistant_name() -> None:
    assert format_outbound_prefix("Hi", "Claw", has_own_number=False) == "Claw: Hi"


def test_own_number_sends_text_unprefixed() -> None:
    assert format_outbound_prefix("Hello", "Andy", has_own_number=True) == "Hello"


def test_prefix_is_added_even_when_text_already_starts_with_it() -> None:
    assert format_outbound_prefix("Andy: hi", "Andy", has_own_number=False) == "Andy: Andy: hi"


def test_prefixed_reply_is_recognised_as_the_bots_own_message() -> None:
    from services.router.model import StoredMessage
    from services.router.selection import is_bot_message

    sent = format_outbound_prefix("done", "Andy", has_own_number=False)
    echo = StoredMessage("e", "g@g.us", "me", "Me", sent, "2024-01-01T00:00:00.000Z", is_from_me=True)
    assert is_bot_message(echo, "Andy")


# --- Properties -----------------------------------------------------------------------------------

# Text built from tag fragments, so nested, spliced and unclosed blocks come up often.
_TAGGY = st.lists(
    st.sampled_from(["<internal>", "</internal>", "<inte", "rnal>", "x", " ", "\n", "<", ">"])
).map("".join)


@given(_TAGGY | st.text())
def test_property_strip_internal_is_idempotent(text: str) -> None:
    once = strip_internal(text)
    assert strip_internal(once) == once


@given(_TAGGY | st.text())
def test_property_strip_internal_leaves_no_complete_internal_block(text: str) -> None:
    result = strip_internal(text)
    start = result.find("<internal>")
    assert start == -1 or "</internal>" not in result[start:]


@given(st.text().filter(lambda s: "<internal>" not in s))
def test_property_text_without_internal_tags_is_only_trimmed(text: str) -> None:
    assert strip_internal(text) == text.strip(
        "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
        "\u2028\u2029\u202f\u205f\u3000\ufeff"
    )
