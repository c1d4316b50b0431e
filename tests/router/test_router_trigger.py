"""Trigger words (NanoClaw v1 formatting.test.ts TRIGGER_PATTERN / getTriggerPattern cases, §6.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.model import Group
from services.router.trigger import (
    default_trigger,
    group_trigger,
    matches_trigger,
    needs_trigger,
    trigger_pattern,
)

ANDY = "@Andy"


def group(trigger: str = ANDY, **kw) -> Group:
    return Group(jid="g@g.us", name="G", folder="g", trigger=trigger, **kw)


# --- TRIGGER_PATTERN (default trigger "@Andy") -------------------------------------------------------


def test_default_trigger_is_at_sign_plus_assistant_name() -> None:
    assert default_trigger("Andy") == "@Andy"
    assert default_trigger("Claw") == "@Claw"


def test_trigger_matches_at_start_of_message() -> None:
    assert matches_trigger("@Andy hello", ANDY)


@pytest.mark.parametrize("content", ["@andy hello", "@ANDY hello"])
def test_trigger_matches_case_insensitively(content: str) -> None:
    assert matches_trigger(content, ANDY)


def test_trigger_does_not_match_when_not_at_start_of_message() -> None:
    assert not matches_trigger("hello @Andy", ANDY)


def test_trigger_needs_word_boundary_after_name() -> None:
    assert not matches_trigger("@Andyextra hello", ANDY)
    assert not matches_trigger("@Andy_x", ANDY)
    assert not matches_trigger("@Andy2", ANDY)


def test_trigger_matches_before_apostrophe() -> None:
    assert matches_trigger("@Andy's thing", ANDY)


def test_trigger_matches_when_it_is_the_whole_message() -> None:
    assert matches_trigger("@Andy", ANDY)


def test_trigger_matches_before_punctuation() -> None:
    assert matches_trigger("@Andy, what's up?", ANDY)
    assert matches_trigger("@Andy: hi", ANDY)


def test_trigger_matches_content_with_leading_and_trailing_whitespace() -> None:
    assert matches_trigger("   @Andy hey   ", ANDY)
    assert matches_trigger("\n\t@Andy hey", ANDY)


def test_trigger_is_trimmed_before_matching() -> None:
    assert matches_trigger("@Andy hi", "  @Andy  ")


def test_content_is_trimmed_like_javascript_including_byte_order_mark() -> None:
    assert matches_trigger("\ufeff@Andy hi", ANDY)


def test_trigger_pattern_is_anchored_and_case_insensitive_regex() -> None:
    pattern = trigger_pattern(ANDY)
    assert pattern.match("@aNdY yo")
    assert not pattern.match("x @Andy")


# --- getTriggerPattern: per-group triggers ---------------------------------------------------------


def test_custom_trigger_matches_its_own_word() -> None:
    assert matches_trigger("@Claw hello", "@Claw")


def test_custom_trigger_does_not_match_default_trigger() -> None:
    assert not matches_trigger("@Andy hello", "@Claw")


def test_group_with_blank_trigger_uses_default_trigger() -> None:
    assert group_trigger(group(trigger=""), "Andy") == "@Andy"
    assert group_trigger(group(trigger="   "), "Andy") == "@Andy"


def test_group_trigger_replaces_default_trigger() -> None:
    assert group_trigger(group(trigger=" @Claw "), "Andy") == "@Claw"


def test_regex_characters_in_custom_trigger_are_literal() -> None:
    assert matches_trigger("@C.L.A.U.D.E hi", "@C.L.A.U.D.E")
    assert not matches_trigger("@CXLXAUXDXE hi", "@C.L.A.U.D.E")
    assert matches_trigger("@a+b go", "@a+b")
    assert not matches_trigger("@aab go", "@a+b")


def test_blank_trigger_pattern_is_an_error() -> None:
    with pytest.raises(ValueError, match="blank"):
        trigger_pattern("  ")


# --- Improvement: triggers ending in a non-word character --------------------------------------------


def test_trigger_ending_in_punctuation_matches_when_followed_by_space() -> None:
    # NanoClaw's trailing \b would require a word character right after "!", refusing "@Andy! hi".
    assert matches_trigger("@Andy! hi", "@Andy!")
    assert matches_trigger("@Andy!", "@Andy!")


def test_trigger_ending_in_punctuation_needs_no_boundary_after_it() -> None:
    assert matches_trigger("@Andy!hi", "@Andy!")


def test_emoji_trigger_matches_with_or_without_space() -> None:
    assert matches_trigger("🤖 what's the weather", "🤖")
    assert matches_trigger("🤖what's the weather", "🤖")
    assert not matches_trigger("hi 🤖", "🤖")


def test_unicode_letters_continue_the_trigger_word() -> None:
    # JS \b is ASCII-only: NanoClaw lets "@Andyé" trigger and refuses "@José hi" for "@José".
    assert not matches_trigger("@Andyé", ANDY)
    assert matches_trigger("@José hi", "@José")
    assert matches_trigger("@JOSÉ hi", "@José")


# --- needsTrigger -------------------------------------------------------------------------------------


def test_main_group_never_needs_trigger() -> None:
    assert not needs_trigger(group(is_main=True))
    assert not needs_trigger(group(is_main=True, requires_trigger=True))


def test_non_main_group_needs_trigger_by_default() -> None:
    assert needs_trigger(group())


def test_non_main_group_with_requires_trigger_false_needs_no_trigger() -> None:
    assert not needs_trigger(group(requires_trigger=False))


# --- Properties ---------------------------------------------------------------------------------------

_WORD_TRIGGER = st.from_regex(r"@?[A-Za-z][A-Za-z0-9]{0,10}", fullmatch=True)


@given(_WORD_TRIGGER, st.text())
def test_property_trigger_followed_by_non_word_character_matches(trigger: str, rest: str) -> None:
    # Any separator that is neither a word character nor whitespace-trimmed away keeps the match.
    assert matches_trigger(trigger + "," + rest, trigger)
    assert matches_trigger(trigger.swapcase() + " " + rest, trigger)


@given(_WORD_TRIGGER, st.text(alphabet=st.characters(categories=("L", "Nd")), min_size=1), st.text())
def test_property_trigger_followed_by_word_character_never_matches(trigger: str, glued: str, rest: str) -> None:
    assert not matches_trigger(trigger + glued + rest, trigger)


@given(_WORD_TRIGGER, st.text(min_size=1).filter(lambda s: s.strip() and not s.strip().startswith("@")))
def test_property_trigger_after_other_text_never_matches(trigger: str, prefix: str) -> None:
    content = prefix.strip() + " " + trigger
    if not content.lower().startswith(trigger.lower()):
        assert not matches_trigger(content, trigger)
