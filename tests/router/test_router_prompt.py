"""Agent prompt format (NanoClaw v1 formatting.test.ts formatMessages/escapeXml, timezone.test.ts; §8)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.model import StoredMessage
from services.router.prompt import (
    escape_xml,
    format_local_time,
    format_messages,
    is_valid_timezone,
    resolve_timezone,
)


def msg(**overrides) -> StoredMessage:
    base = StoredMessage(
        id="1",
        chat_jid="group@g.us",
        sender="123@s.whatsapp.net",
        sender_name="Alice",
        content="hello",
        timestamp="2024-01-01T00:00:00.000Z",
    )
    return replace(base, **overrides)


# --- escapeXml ----------------------------------------------------------------------------------------


def test_escape_xml_escapes_ampersand() -> None:
    assert escape_xml("a & b") == "a &amp; b"


def test_escape_xml_escapes_less_than() -> None:
    assert escape_xml("a < b") == "a &lt; b"


def test_escape_xml_escapes_greater_than() -> None:
    assert escape_xml("a > b") == "a &gt; b"


def test_escape_xml_escapes_double_quotes() -> None:
    assert escape_xml('"hello"') == "&quot;hello&quot;"


def test_escape_xml_escapes_several_special_characters_together() -> None:
    assert escape_xml('a & b < c > d "e"') == "a &amp; b &lt; c &gt; d &quot;e&quot;"


def test_escape_xml_passes_plain_text_through() -> None:
    assert escape_xml("hello world") == "hello world"


def test_escape_xml_of_empty_string_or_none_is_empty() -> None:
    assert escape_xml("") == ""
    assert escape_xml(None) == ""


def test_escape_xml_leaves_single_quote_alone() -> None:
    assert escape_xml("it's") == "it's"


def test_escape_xml_does_not_double_escape_existing_entities_wrongly() -> None:
    assert escape_xml("&lt;") == "&amp;lt;"


# --- formatMessages -----------------------------------------------------------------------------------


def test_prompt_has_context_header_sender_content_and_date() -> None:
    result = format_messages([msg()], "UTC")
    assert '<context timezone="UTC" />' in result
    assert '<message sender="Alice"' in result
    assert ">hello</message>" in result
    assert "Jan 1, 2024" in result


def test_prompt_for_one_message_is_byte_exact() -> None:
    assert format_messages([msg()], "UTC") == (
        '<context timezone="UTC" />\n'
        "<messages>\n"
        '<message sender="Alice" time="Jan 1, 2024, 12:00 AM">hello</message>\n'
        "</messages>"
    )


def test_prompt_lists_multiple_senders_in_order_one_per_line() -> None:
    msgs = [
        msg(id="1", sender_name="Alice", content="hi", timestamp="2024-01-01T00:00:00.000Z"),
        msg(id="2", sender_name="Bob", content="hey", timestamp="2024-01-01T01:00:00.000Z"),
    ]
    lines = format_messages(msgs, "UTC").split("\n")
    assert lines[2] == '<message sender="Alice" time="Jan 1, 2024, 12:00 AM">hi</message>'
    assert lines[3] == '<message sender="Bob" time="Jan 1, 2024, 1:00 AM">hey</message>'


def test_prompt_escapes_sender_name() -> None:
    assert 'sender="A &amp; B &lt;Co&gt;"' in format_messages([msg(sender_name="A & B <Co>")], "UTC")


def test_prompt_escapes_content() -> None:
    result = format_messages([msg(content='<script>alert("xss")</script>')], "UTC")
    assert "&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt;" in result
    assert "<script>" not in result


def test_prompt_for_empty_list_has_blank_line_between_messages_tags() -> None:
    assert format_messages([], "UTC") == '<context timezone="UTC" />\n<messages>\n\n</messages>'


def test_reply_adds_reply_to_attribute_and_quoted_message_on_indented_line() -> None:
    reply = msg(
        content="Yes, on my way!",
        reply_to_message_id="42",
        reply_to_message_content="Are you coming tonight?",
        reply_to_sender_name="Bob",
    )
    result = format_messages([reply], "UTC")
    assert 'reply_to="42"' in result
    assert '<quoted_message from="Bob">Are you coming tonight?</quoted_message>' in result
    assert (
        '<message sender="Alice" time="Jan 1, 2024, 12:00 AM" reply_to="42">\n'
        '  <quoted_message from="Bob">Are you coming tonight?</quoted_message>Yes, on my way!</message>'
    ) in result


def test_message_without_reply_has_neither_reply_to_nor_quoted_message() -> None:
    result = format_messages([msg()], "UTC")
    assert "reply_to" not in result
    assert "quoted_message" not in result


def test_reply_id_without_quoted_content_gives_reply_to_but_no_quote() -> None:
    result = format_messages([msg(reply_to_message_id="42", reply_to_sender_name="Bob")], "UTC")
    assert 'reply_to="42"' in result
    assert "quoted_message" not in result


def test_quote_needs_both_content_and_sender_name() -> None:
    no_sender = msg(reply_to_message_id="42", reply_to_message_content="Are you coming?")
    assert "quoted_message" not in format_messages([no_sender], "UTC")


def test_empty_reply_id_is_treated_as_no_reply() -> None:
    assert "reply_to" not in format_messages([msg(reply_to_message_id="")], "UTC")


def test_reply_fields_are_escaped() -> None:
    reply = msg(
        reply_to_message_id='4"2',
        reply_to_message_content="<b>bold</b> & more",
        reply_to_sender_name='Bob "the builder"',
    )
    result = format_messages([reply], "UTC")
    assert 'reply_to="4&quot;2"' in result
    assert (
        '<quoted_message from="Bob &quot;the builder&quot;">&lt;b&gt;bold&lt;/b&gt; &amp; more</quoted_message>'
        in result
    )


def test_trigger_text_stays_in_the_content() -> None:
    assert ">@Andy what's up?</message>" in format_messages([msg(content="@Andy what's up?")], "UTC")


def test_timestamps_are_shown_in_the_given_timezone() -> None:
    result = format_messages([msg(timestamp="2024-01-01T18:30:00.000Z")], "America/New_York")
    assert "1:30" in result
    assert "PM" in result
    assert '<context timezone="America/New_York" />' in result
    assert 'time="Jan 1, 2024, 1:30 PM"' in result


def test_invalid_timezone_falls_back_to_utc_in_header_and_times() -> None:
    result = format_messages([msg(timestamp="2024-01-01T18:30:00.000Z")], "IST-2")
    assert '<context timezone="UTC" />' in result
    assert 'time="Jan 1, 2024, 6:30 PM"' in result


# --- No notice of omitted messages (issue 13: nothing is omitted) ------------------------------------------

def test_a_prompt_is_exactly_the_messages_it_was_given_with_no_omission_notice() -> None:
    msgs = [msg()] * 3
    prompt = format_messages(msgs, "UTC")
    assert "omitted" not in prompt and prompt.count("<message ") == 3



# --- timezone.test.ts ---------------------------------------------------------------------------------


def test_local_time_in_new_york_shows_hour_meridiem_month_and_year() -> None:
    shown = format_local_time("2026-02-04T18:30:00.000Z", "America/New_York")
    assert shown == "Feb 4, 2026, 1:30 PM"
    for part in ("1:30", "PM", "Feb", "2026"):
        assert part in shown


def test_same_instant_shows_8_in_new_york_summer_time_and_9_in_tokyo() -> None:
    instant = "2026-06-15T12:00:00.000Z"  # NY is UTC-4 (EDT) in June, Tokyo UTC+9
    assert format_local_time(instant, "America/New_York") == "Jun 15, 2026, 8:00 AM"
    assert format_local_time(instant, "Asia/Tokyo") == "Jun 15, 2026, 9:00 PM"


def test_invalid_timezone_does_not_raise_and_shows_utc() -> None:
    assert format_local_time("2026-01-01T12:00:00.000Z", "IST-2") == "Jan 1, 2026, 12:00 PM"


@pytest.mark.parametrize("name", ["America/New_York", "UTC", "Asia/Tokyo", "Asia/Jerusalem", "Etc/GMT+5"])
def test_iana_names_are_valid_timezones(name: str) -> None:
    assert is_valid_timezone(name)


@pytest.mark.parametrize("name", ["IST-2", "XYZ+3", "", "NotATimezone", "+05:30", "localtime", "../etc"])
def test_posix_strings_blank_and_unknown_names_are_not_valid_timezones(name: str) -> None:
    assert not is_valid_timezone(name)


def test_resolve_timezone_falls_back_to_utc_for_invalid_names() -> None:
    assert resolve_timezone("IST-2") == "UTC"
    assert resolve_timezone("") == "UTC"
    assert resolve_timezone(None) == "UTC"


def test_resolve_timezone_keeps_valid_names() -> None:
    assert resolve_timezone("America/New_York") == "America/New_York"


def test_resolve_timezone_is_case_insensitive_like_intl() -> None:
    assert resolve_timezone("america/new_york") == "America/New_York"
    assert resolve_timezone("utc") == "UTC"


# --- Local time format details (checked against Node 20 toLocaleString) -------------------------------


@pytest.mark.parametrize(
    ("timestamp", "tz", "shown"),
    [
        ("2024-01-01T00:05:00.000Z", "UTC", "Jan 1, 2024, 12:05 AM"),
        ("2024-01-01T12:05:00.000Z", "UTC", "Jan 1, 2024, 12:05 PM"),
        ("2024-01-01T18:30:00.000Z", "Asia/Kolkata", "Jan 2, 2024, 12:00 AM"),
        ("2024-01-01T18:30:00.000Z", "Asia/Tokyo", "Jan 2, 2024, 3:30 AM"),
        ("2024-03-10T07:00:00.000Z", "America/New_York", "Mar 10, 2024, 3:00 AM"),
        ("2024-11-03T06:30:00.000Z", "America/New_York", "Nov 3, 2024, 1:30 AM"),
        ("2024-01-01T18:30Z", "America/New_York", "Jan 1, 2024, 1:30 PM"),
        ("2024-01-01T18:30:00+05:00", "UTC", "Jan 1, 2024, 1:30 PM"),
    ],
)
def test_local_time_matches_node_en_us_format(timestamp: str, tz: str, shown: str) -> None:
    assert format_local_time(timestamp, tz) == shown


def test_timestamp_without_offset_is_read_as_utc() -> None:
    assert format_local_time("2024-01-01T10:00:00", "UTC") == "Jan 1, 2024, 10:00 AM"


def test_unparseable_timestamp_shows_invalid_date_like_javascript() -> None:
    assert format_local_time("garbage", "UTC") == "Invalid Date"
    assert 'time="Invalid Date"' in format_messages([msg(timestamp="")], "UTC")


# --- Properties ---------------------------------------------------------------------------------------


@given(st.text())
def test_property_escape_xml_leaves_no_raw_markup_and_every_ampersand_starts_an_entity(text: str) -> None:
    escaped = escape_xml(text)
    assert "<" not in escaped and ">" not in escaped and '"' not in escaped
    for i, ch in enumerate(escaped):
        if ch == "&":
            assert escaped.startswith(("&amp;", "&lt;", "&gt;", "&quot;"), i)


@given(st.text())
def test_property_escape_xml_round_trips_through_an_xml_parser(text: str) -> None:
    # Restrict to characters XML 1.0 can carry; CR is normalised by parsers, so leave it out too.
    legal = "".join(c for c in text if c in "\t\n" or ("\x20" <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd"))
    element = ET.fromstring(f'<x a="{escape_xml(legal)}">{escape_xml(legal)}</x>')
    assert (element.text or "") == legal
    # Attribute-value normalisation turns tab and newline into spaces; nothing else changes.
    assert element.get("a") == legal.replace("\t", " ").replace("\n", " ")


# Text an XML 1.0 document can carry (no control characters except tab and newline, no surrogates).
_XML_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff")
    | st.sampled_from("\t\n"),
)


@given(
    st.lists(
        st.tuples(_XML_TEXT, _XML_TEXT.filter(bool), st.datetimes(timezones=st.just(timezone.utc))),
        max_size=5,
    )
)
def test_property_prompt_is_well_formed_xml_that_preserves_senders_and_contents(rows) -> None:
    msgs = [
        msg(id=str(i), sender_name=name, content=content, timestamp=when.isoformat())
        for i, (name, content, when) in enumerate(rows)
    ]
    root = ET.fromstring("<root>" + format_messages(msgs, "Europe/Paris") + "</root>")
    elements = root.find("messages").findall("message")
    assert [(e.get("sender"), e.text or "") for e in elements] == [
        (name.replace("\t", " ").replace("\n", " "), content) for name, content, _ in rows
    ]
