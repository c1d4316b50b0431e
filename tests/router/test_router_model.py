"""Router data shapes and the shared JS-compatible trim."""

from __future__ import annotations

import dataclasses

import pytest

from services.router.model import Group, StoredMessage, js_trim


def test_stored_message_has_the_messages_table_columns_and_defaults() -> None:
    m = StoredMessage("id-1", "g@g.us", "u@s.whatsapp.net", "U", "hi", "2024-01-01T13:30:00.000Z")
    assert [f.name for f in dataclasses.fields(m)] == [
        "id",
        "chat_jid",
        "sender",
        "sender_name",
        "content",
        "timestamp",
        "is_from_me",
        "is_bot_message",
        "reply_to_message_id",
        "reply_to_message_content",
        "reply_to_sender_name",
    ]
    assert (m.is_from_me, m.is_bot_message, m.reply_to_message_id) == (False, False, None)


def test_stored_message_is_immutable() -> None:
    m = StoredMessage("id-1", "g@g.us", "u", "U", "hi", "2024-01-01T13:30:00.000Z")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.content = "changed"  # type: ignore[misc]


def test_group_defaults_to_non_main_requiring_trigger_without_container_config() -> None:
    g = Group(jid="g@g.us", name="Family", folder="family", trigger="@Andy")
    assert (g.requires_trigger, g.is_main, g.container_config) == (True, False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.is_main = True  # type: ignore[misc]


def test_js_trim_strips_what_javascript_trim_strips() -> None:
    assert js_trim("\ufeff\u00a0\u3000 hi \u2028\n") == "hi"


def test_js_trim_keeps_characters_javascript_trim_keeps() -> None:
    # Python's str.strip() would remove these; String.prototype.trim() does not.
    assert js_trim("\x1chi\x85") == "\x1chi\x85"
