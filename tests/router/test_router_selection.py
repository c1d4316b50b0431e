"""Message selection and the trigger gate (NanoClaw v1 db.test.ts getMessagesSince/getNewMessages/
getLastBotMessageTimestamp cases, formatting.test.ts trigger gating truth table; §5, §6.1, §7)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.model import Group, StoredMessage
from services.router.prompt import format_messages
from services.router.selection import (
    advance_cursor,
    batches,
    is_bot_message,
    new_messages,
    pending_messages,
    recover_cursor,
    should_trigger,
    unseen_messages,
)

GROUP = "group@g.us"


def msg(id: str, content: str, timestamp: str, chat_jid: str = GROUP, **kw) -> StoredMessage:
    return StoredMessage(
        id=id,
        chat_jid=chat_jid,
        sender=kw.pop("sender", "user@s.whatsapp.net"),
        sender_name=kw.pop("sender_name", "User"),
        content=content,
        timestamp=timestamp,
        **kw,
    )


@pytest.fixture
def chat() -> list[StoredMessage]:
    """db.test.ts getMessagesSince fixture: two users, a flagged bot reply, a third user."""
    return [
        msg("m1", "first", "2024-01-01T00:00:01.000Z", sender_name="Alice"),
        msg("m2", "second", "2024-01-01T00:00:02.000Z", sender_name="Bob"),
        msg("m3", "bot reply", "2024-01-01T00:00:03.000Z", sender_name="Bot", is_bot_message=True),
        msg("m4", "third", "2024-01-01T00:00:04.000Z", sender_name="Carol"),
    ]


def contents(messages: list[StoredMessage]) -> list[str]:
    return [m.content for m in messages]


# --- getMessagesSince -----------------------------------------------------------------------------


def test_pending_messages_returns_a_stored_message_with_its_fields() -> None:
    stored = msg("msg-1", "hello world", "2024-01-01T00:00:01.000Z", sender="123@s.whatsapp.net", sender_name="Alice")
    selected, omitted = pending_messages([stored], "2024-01-01T00:00:00.000Z", "Andy")
    assert selected == [stored] and omitted == 0


def test_pending_messages_exclude_empty_content() -> None:
    selected, _ = pending_messages([msg("msg-2", "", "2024-01-01T00:00:04.000Z")], "2024-01-01T00:00:00.000Z", "Andy")
    assert selected == []


def test_pending_messages_keep_whitespace_only_content_like_sql_does() -> None:
    selected, _ = pending_messages([msg("w", "  ", "2024-01-01T00:00:04.000Z")], "", "Andy")
    assert contents(selected) == ["  "]


def test_pending_messages_include_messages_from_me() -> None:
    mine = msg("msg-3", "my message", "2024-01-01T00:00:05.000Z", is_from_me=True)
    assert pending_messages([mine], "2024-01-01T00:00:00.000Z", "Andy")[0] == [mine]


def test_pending_messages_carry_reply_fields() -> None:
    reply = msg(
        "reply-1",
        "Yes, on my way!",
        "2024-01-01T00:00:01.000Z",
        reply_to_message_id="42",
        reply_to_message_content="Are you coming tonight?",
        reply_to_sender_name="Bob",
    )
    [selected], _ = pending_messages([reply], "2024-01-01T00:00:00.000Z", "Andy")
    assert (selected.reply_to_message_id, selected.reply_to_message_content, selected.reply_to_sender_name) == (
        "42",
        "Are you coming tonight?",
        "Bob",
    )


def test_pending_messages_without_reply_have_no_reply_fields() -> None:
    [selected], _ = pending_messages([msg("no-reply", "Just a normal message", "2024-01-01T00:00:01.000Z")], "", "Andy")
    assert selected.reply_to_message_id is None
    assert selected.reply_to_message_content is None
    assert selected.reply_to_sender_name is None


def test_pending_messages_are_only_those_strictly_after_the_cursor_and_not_from_the_bot(chat) -> None:
    selected, omitted = pending_messages(chat, "2024-01-01T00:00:02.000Z", "Andy")
    assert contents(selected) == ["third"]
    assert omitted == 0


def test_pending_messages_exclude_flagged_bot_messages(chat) -> None:
    selected, _ = pending_messages(chat, "2024-01-01T00:00:00.000Z", "Andy")
    assert "bot reply" not in contents(selected)


def test_empty_cursor_returns_every_non_bot_message(chat) -> None:
    selected, _ = pending_messages(chat, "", "Andy")
    assert contents(selected) == ["first", "second", "third"]


def test_recovered_cursor_skips_history_before_the_last_bot_reply(chat) -> None:
    history = [msg(f"history-{i}", f"old message {i}", f"2023-06-{i:02d}T12:00:00.000Z") for i in range(1, 51)]
    newer = msg("new-1", "new message after bot reply", "2024-01-02T00:00:00.000Z")
    rows = chat + history + [newer]

    cursor = recover_cursor(rows, "Andy")
    assert cursor == "2024-01-01T00:00:03.000Z"

    selected, omitted = pending_messages(rows, cursor, "Andy", 10)
    assert contents(selected) == ["third", "new message after bot reply"]
    assert omitted == 0


def test_limit_keeps_the_most_recent_messages_in_chronological_order(chat) -> None:
    pending = [msg(f"pending-{i}", f"pending message {i}", f"2024-02-{i:02d}T12:00:00.000Z") for i in range(1, 31)]
    rows = chat + pending
    cursor = recover_cursor(rows, "Andy")
    assert cursor == "2024-01-01T00:00:03.000Z"

    selected, omitted = pending_messages(rows, cursor, "Andy", 10)
    assert len(selected) == 10
    assert selected[0].content == "pending message 21"
    assert selected[9].content == "pending message 30"
    # m4 "third" plus pending 1..20 were cut off: NanoClaw drops them silently, we report the count.
    assert omitted == 21


def test_no_bot_reply_and_no_cursor_gives_last_ten_messages_and_ten_message_tags() -> None:
    rows = [
        msg(f"fresh-{i}", f"message {i}", f"2024-02-{i:02d}T12:00:00.000Z", chat_jid="fresh@g.us")
        for i in range(1, 21)
    ]
    assert recover_cursor(rows, "Andy") == ""

    selected, omitted = pending_messages(rows, "", "Andy", 10)
    assert len(selected) == 10
    assert omitted == 10

    prompt = format_messages(selected, "Asia/Jerusalem")
    assert prompt.count("<message ") == 10
    # what the router does instead (issue 13): all 20, in two turns of ten
    turns = batches(unseen_messages(rows, "", None, "Andy"), 10)
    assert [len(t) for t in turns] == [10, 10] and [m.id for t in turns for m in t] == [m.id for m in rows]


def test_content_prefix_backstop_excludes_unflagged_bot_messages(chat) -> None:
    old_reply = msg("m5", "Andy: old bot reply", "2024-01-01T00:00:05.000Z", sender_name="Bot")
    selected, _ = pending_messages(chat + [old_reply], "2024-01-01T00:00:04.000Z", "Andy")
    assert selected == []


def test_bot_prefix_backstop_uses_the_configured_assistant_name() -> None:
    rows = [msg("a", "Claw: hi", "2024-01-01T00:00:01.000Z"), msg("b", "Andy: hi", "2024-01-01T00:00:02.000Z")]
    assert contents(pending_messages(rows, "", "Claw")[0]) == ["Andy: hi"]


def test_bot_prefix_backstop_is_case_sensitive() -> None:
    assert not is_bot_message(msg("a", "andy: what's up", "2024-01-01T00:00:01.000Z"), "Andy")
    assert not is_bot_message(msg("a", "Andy what's up", "2024-01-01T00:00:01.000Z"), "Andy")
    assert is_bot_message(msg("a", "Andy:no space", "2024-01-01T00:00:01.000Z"), "Andy")


def test_pending_messages_accept_rows_in_any_order() -> None:
    rows = [msg("b", "two", "2024-01-01T00:00:02.000Z"), msg("a", "one", "2024-01-01T00:00:01.000Z")]
    assert contents(pending_messages(rows, "", "Andy")[0]) == ["one", "two"]


def test_pending_messages_with_equal_timestamps_keep_input_order() -> None:
    rows = [msg(str(i), f"same {i}", "2024-01-01T00:00:01.000Z") for i in range(3)]
    assert contents(pending_messages(rows, "", "Andy")[0]) == ["same 0", "same 1", "same 2"]


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_one_is_an_error(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        pending_messages([], "", "Andy", limit)
    with pytest.raises(ValueError, match="limit"):
        new_messages([], [GROUP], "", "Andy", limit)


# --- getLastBotMessageTimestamp / cursor recovery --------------------------------------------------


def test_recovered_cursor_is_the_latest_bot_message_by_flag_or_prefix() -> None:
    rows = [
        msg("a", "bot flagged", "2024-01-01T00:00:03.000Z", is_bot_message=True),
        msg("b", "Andy: unflagged, later", "2024-01-01T00:00:07.000Z"),
        msg("c", "human, latest", "2024-01-01T00:00:09.000Z"),
    ]
    assert recover_cursor(rows, "Andy") == "2024-01-01T00:00:07.000Z"


def test_recovered_cursor_is_empty_when_the_bot_never_spoke() -> None:
    assert recover_cursor([msg("a", "hi", "2024-01-01T00:00:01.000Z")], "Andy") == ""
    assert recover_cursor([], "Andy") == ""


# --- getNewMessages ------------------------------------------------------------------------------


@pytest.fixture
def two_groups() -> list[StoredMessage]:
    return [
        msg("a1", "g1 msg1", "2024-01-01T00:00:01.000Z", chat_jid="group1@g.us"),
        msg("a2", "g2 msg1", "2024-01-01T00:00:02.000Z", chat_jid="group2@g.us"),
        msg("a3", "bot reply", "2024-01-01T00:00:03.000Z", chat_jid="group1@g.us", is_bot_message=True),
        msg("a4", "g1 msg2", "2024-01-01T00:00:04.000Z", chat_jid="group1@g.us"),
        msg("x1", "unregistered", "2024-01-01T00:00:05.000Z", chat_jid="other@g.us"),
    ]


def test_new_messages_span_registered_groups_and_advance_cursor_to_latest(two_groups) -> None:
    selected, cursor = new_messages(two_groups, ["group1@g.us", "group2@g.us"], "2024-01-01T00:00:00.000Z", "Andy")
    assert contents(selected) == ["g1 msg1", "g2 msg1", "g1 msg2"]
    assert cursor == "2024-01-01T00:00:04.000Z"


def test_new_messages_filter_by_timestamp(two_groups) -> None:
    selected, _ = new_messages(two_groups, ["group1@g.us", "group2@g.us"], "2024-01-01T00:00:02.000Z", "Andy")
    assert contents(selected) == ["g1 msg2"]


def test_new_messages_for_no_registered_groups_are_empty_and_keep_the_cursor(two_groups) -> None:
    assert new_messages(two_groups, [], "", "Andy") == ([], "")
    assert new_messages(two_groups, [], "2024-01-01T00:00:02.000Z", "Andy") == ([], "2024-01-01T00:00:02.000Z")


def test_new_messages_with_nothing_new_keep_the_cursor(two_groups) -> None:
    assert new_messages(two_groups, ["group1@g.us"], "2024-01-01T00:00:09.000Z", "Andy") == (
        [],
        "2024-01-01T00:00:09.000Z",
    )


def test_new_messages_carry_reply_fields() -> None:
    reply = msg(
        "reply-2",
        "Agreed",
        "2024-01-01T00:00:01.000Z",
        reply_to_message_id="99",
        reply_to_message_content="We should meet",
        reply_to_sender_name="Dave",
    )
    [selected], _ = new_messages([reply], [GROUP], "2024-01-01T00:00:00.000Z", "Andy")
    assert selected.reply_to_message_id == "99" and selected.reply_to_sender_name == "Dave"


@pytest.fixture
def ten() -> list[StoredMessage]:
    return [msg(f"n{i}", f"message {i}", f"2024-01-01T00:00:{i:02d}.000Z") for i in range(1, 11)]


def test_new_messages_limit_keeps_the_most_recent_and_cursor_is_the_newest(ten) -> None:
    selected, cursor = new_messages(ten, [GROUP], "", "Andy", limit=3)
    assert contents(selected) == ["message 8", "message 9", "message 10"]
    assert cursor == "2024-01-01T00:00:10.000Z"


def test_new_messages_limit_above_count_returns_all(ten) -> None:
    selected, _ = new_messages(ten, [GROUP], "", "Andy", limit=50)
    assert contents(selected) == [f"message {i}" for i in range(1, 11)]


# --- Trigger gate (formatting.test.ts truth table, §6.1) -------------------------------------------


def group(**kw) -> Group:
    return Group(jid=GROUP, name="G", folder="g", trigger=kw.pop("trigger", "@Andy"), **kw)


def allow_all(chat_jid: str, sender: str) -> bool:
    return True


def deny_all(chat_jid: str, sender: str) -> bool:
    return False


PLAIN = [msg("1", "hello no trigger", "2024-01-01T00:00:01.000Z")]
TRIGGERED = [msg("1", "@Andy do something", "2024-01-01T00:00:01.000Z")]


def test_main_group_always_processes_without_trigger() -> None:
    assert should_trigger(group(is_main=True), PLAIN, "Andy", allow_all)


def test_main_group_processes_even_with_requires_trigger_true() -> None:
    assert should_trigger(group(is_main=True, requires_trigger=True), PLAIN, "Andy", deny_all)


def test_non_main_group_with_default_requires_trigger_skips_untriggered_messages() -> None:
    assert not should_trigger(group(), PLAIN, "Andy", allow_all)


def test_non_main_group_with_requires_trigger_true_skips_untriggered_messages() -> None:
    assert not should_trigger(group(requires_trigger=True), PLAIN, "Andy", allow_all)


def test_non_main_group_processes_when_a_message_has_the_trigger() -> None:
    assert should_trigger(group(requires_trigger=True), TRIGGERED, "Andy", allow_all)


def test_non_main_group_with_requires_trigger_false_always_processes() -> None:
    assert should_trigger(group(requires_trigger=False), PLAIN, "Andy", deny_all)


def test_custom_trigger_group_processes_its_own_trigger() -> None:
    claw = [msg("1", "@Claw do something", "2024-01-01T00:00:01.000Z")]
    assert should_trigger(group(trigger="@Claw"), claw, "Andy", allow_all)


def test_custom_trigger_group_ignores_the_default_trigger() -> None:
    assert not should_trigger(group(trigger="@Claw"), TRIGGERED, "Andy", allow_all)


def test_group_with_blank_trigger_answers_the_default_trigger() -> None:
    assert should_trigger(group(trigger=""), TRIGGERED, "Andy", allow_all)


def test_any_triggering_message_in_the_batch_is_enough() -> None:
    batch = PLAIN + [msg("2", "still chatting", "2024-01-01T00:00:02.000Z")] + TRIGGERED
    assert should_trigger(group(), batch, "Andy", allow_all)


def test_trigger_from_a_sender_not_on_the_allowlist_does_not_process() -> None:
    assert not should_trigger(group(), TRIGGERED, "Andy", deny_all)


def test_trigger_from_me_processes_even_when_sender_is_not_allowed() -> None:
    mine = [replace(TRIGGERED[0], is_from_me=True)]
    assert should_trigger(group(), mine, "Andy", deny_all)


def test_sender_allowlist_is_asked_with_chat_and_sender_of_triggering_messages_only() -> None:
    calls: list[tuple[str, str]] = []

    def record(chat_jid: str, sender: str) -> bool:
        calls.append((chat_jid, sender))
        return sender == "boss@s.whatsapp.net"

    batch = [
        msg("1", "no trigger", "2024-01-01T00:00:01.000Z", sender="boss@s.whatsapp.net"),
        msg("2", "@Andy hi", "2024-01-01T00:00:02.000Z", sender="eve@s.whatsapp.net"),
        msg("3", "@Andy hi", "2024-01-01T00:00:03.000Z", sender="boss@s.whatsapp.net"),
    ]
    assert should_trigger(group(), batch, "Andy", record)
    assert calls == [(GROUP, "eve@s.whatsapp.net"), (GROUP, "boss@s.whatsapp.net")]


def test_empty_batch_never_triggers() -> None:
    assert not should_trigger(group(is_main=True), [], "Andy", allow_all)
    assert not should_trigger(group(requires_trigger=False), [], "Andy", allow_all)


def test_bot_messages_never_trigger() -> None:
    echo = [msg("1", "@Andy hi", "2024-01-01T00:00:01.000Z", is_bot_message=True, is_from_me=True)]
    assert not should_trigger(group(), echo, "Andy", allow_all)
    assert not should_trigger(group(is_main=True), echo, "Andy", allow_all)


# --- Properties -----------------------------------------------------------------------------------

_TS = st.integers(min_value=0, max_value=59).map(lambda s: f"2024-01-01T00:00:{s:02d}.000Z")
_ROW = st.builds(
    StoredMessage,
    id=st.uuids().map(str),
    chat_jid=st.sampled_from([GROUP, "other@g.us"]),
    sender=st.just("u@s.whatsapp.net"),
    sender_name=st.just("U"),
    content=st.sampled_from(["", "hi", "Andy: bot", "@Andy go", " "]),
    timestamp=_TS,
    is_bot_message=st.booleans(),
)


@given(st.lists(_ROW, max_size=40), st.one_of(st.just(""), _TS), st.integers(min_value=1, max_value=15))
def test_property_pending_selection_is_the_newest_eligible_suffix(rows, cursor, limit) -> None:
    selected, omitted = pending_messages(rows, cursor, "Andy", limit)
    eligible = [r for r in rows if r.timestamp > cursor and r.content and not is_bot_message(r, "Andy")]
    assert len(selected) == min(limit, len(eligible))
    assert omitted == len(eligible) - len(selected)
    assert [m.timestamp for m in selected] == sorted(m.timestamp for m in selected)
    assert all(m in eligible for m in selected)
    if omitted:
        assert max(m.timestamp for m in eligible if m not in selected) <= selected[0].timestamp


@given(st.lists(_ROW, max_size=40), st.one_of(st.just(""), _TS))
def test_property_new_messages_cursor_never_moves_backwards(rows, cursor) -> None:
    selected, new_cursor = new_messages(rows, [GROUP], cursor, "Andy", limit=5)
    assert new_cursor >= cursor
    assert all(m.chat_jid == GROUP and m.timestamp <= new_cursor for m in selected)


# --- No silent cut (issue 13): every eligible message reaches exactly one turn, in order ------------------------

def test_unseen_messages_skip_only_the_ids_at_the_cursor_already_handed_over() -> None:
    same = "2024-01-01T00:00:05.000Z"
    rows = [msg("a", "x", same), msg("b", "y", same), msg("c", "z", "2024-01-01T00:00:06.000Z")]
    assert [m.id for m in unseen_messages(rows, same, ["a"], "Andy")] == ["b", "c"]
    assert [m.id for m in unseen_messages(rows, same, None, "Andy")] == ["c"]  # older cursors: v1's strict ">"


def test_batches_are_consecutive_and_at_most_the_limit() -> None:
    rows = [msg(f"m{i}", "x", f"2024-01-01T00:00:{i:02d}.000Z") for i in range(7)]
    assert [[m.id for m in b] for b in batches(rows, 3)] == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]
    with pytest.raises(ValueError):
        batches(rows, 0)


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=40), st.integers(min_value=1, max_value=5),
       st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=20))
def test_property_every_message_is_handed_over_exactly_once_in_arrival_order(steps, limit, arrivals) -> None:
    # messages arrive in bursts (timestamps never go back; many share one); after each burst the router hands
    # over everything unseen in batches, moving the cursor as the handler does
    stored: list[StoredMessage] = []
    cursor, ids, given_ids, second = "", None, [], 0
    for burst in arrivals:
        for _ in range(burst):
            second += steps[len(stored) % len(steps)]
            stored.append(msg(f"m{len(stored)}", "x", f"2024-01-01T00:{second // 60:02d}:{second % 60:02d}.000Z"))
        for batch in batches(unseen_messages(stored, cursor, ids, "Andy"), limit):
            assert len(batch) <= limit
            given_ids += [m.id for m in batch]
            cursor, ids = advance_cursor(cursor, ids, batch)
    assert given_ids == [m.id for m in stored]
