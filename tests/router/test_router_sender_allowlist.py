"""Sender allowlist (NanoClaw v1 sender-allowlist.test.ts, §4 step 5, §21.1) plus the fail-closed policy."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.router.model import Group, StoredMessage
from services.router.selection import should_trigger
from services.router.sender_allowlist import (
    ALLOW_ALL,
    DENY_ALL,
    DENY_ENTRY,
    ChatAllowlistEntry,
    SenderAllowlist,
    entry_for,
    is_sender_allowed,
    is_trigger_allowed,
    load_sender_allowlist,
    should_drop_message,
)

LOGGER = "services.router.sender_allowlist"


def write(tmp_path: Path, config: object, name: str = "sender-allowlist.json") -> Path:
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else json.dumps(config), encoding="utf-8")
    return path


def cfg(default: dict, chats: dict | None = None, log_denied: bool = True) -> SenderAllowlist:
    return SenderAllowlist.model_validate({"default": default, "chats": chats or {}, "logDenied": log_denied})


# --- loadSenderAllowlist (fail-open, NanoClaw's behaviour) ------------------------------------------


def test_missing_file_allows_everyone_in_trigger_mode_and_logs_denials(tmp_path: Path) -> None:
    loaded = load_sender_allowlist(tmp_path / "absent.json", fail_closed=False)
    assert loaded.default.allow == "*"
    assert loaded.default.mode == "trigger"
    assert loaded.log_denied is True
    assert loaded == ALLOW_ALL


def test_allow_star_config_keeps_log_denied_false(tmp_path: Path) -> None:
    path = write(tmp_path, {"default": {"allow": "*", "mode": "trigger"}, "chats": {}, "logDenied": False})
    loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded.default.allow == "*"
    assert loaded.log_denied is False


def test_empty_allow_list_is_kept_and_denies_everyone(tmp_path: Path) -> None:
    path = write(tmp_path, {"default": {"allow": [], "mode": "trigger"}, "chats": {}})
    loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded.default.allow == ()
    assert not is_sender_allowed(loaded, "g1", "anyone")


def test_allow_list_with_drop_mode_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, {"default": {"allow": ["alice", "bob"], "mode": "drop"}, "chats": {}})
    loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded.default.allow == ("alice", "bob")
    assert loaded.default.mode == "drop"


def test_per_chat_override_is_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"default": {"allow": "*", "mode": "trigger"}, "chats": {"group-a": {"allow": ["alice"], "mode": "drop"}}},
    )
    loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded.chats["group-a"] == ChatAllowlistEntry(allow=("alice",), mode="drop")


def test_log_denied_defaults_to_true_and_only_literal_false_disables_it(tmp_path: Path) -> None:
    base = {"default": {"allow": "*", "mode": "trigger"}}
    assert load_sender_allowlist(write(tmp_path, base), fail_closed=False).log_denied is True
    assert load_sender_allowlist(write(tmp_path, {**base, "logDenied": "no"}), fail_closed=False).log_denied is True
    assert load_sender_allowlist(write(tmp_path, {**base, "logDenied": False}), fail_closed=False).log_denied is False


def test_invalid_json_allows_everyone_and_warns_naming_file_and_problem(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, "{ not valid json }}}")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded == ALLOW_ALL
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert str(path) in record.getMessage()
    assert "invalid JSON" in record.getMessage()
    assert "line 1 column 3" in record.getMessage()
    assert "fail-open" in record.getMessage()


def test_invalid_schema_allows_everyone_and_warns(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, {"default": {"oops": True}})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded.default.allow == "*"
    message = caplog.records[0].getMessage()
    assert str(path) in message and "invalid 'default' entry" in message and "allow" in message


def test_missing_default_entry_allows_everyone_and_warns(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, {"chats": {}})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_sender_allowlist(path, fail_closed=False) == ALLOW_ALL
    assert "missing 'default' entry" in caplog.records[0].getMessage()


@pytest.mark.parametrize("top", [[], None, "text", 3])
def test_top_level_that_is_not_an_object_allows_everyone_and_warns(tmp_path: Path, caplog, top) -> None:
    path = write(tmp_path, json.dumps(top))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_sender_allowlist(path, fail_closed=False) == ALLOW_ALL
    assert "expected an object" in caplog.records[0].getMessage()


def test_non_string_allow_items_make_the_whole_config_fall_back_to_allow_all(tmp_path: Path) -> None:
    path = write(tmp_path, {"default": {"allow": [123, None, True], "mode": "trigger"}, "chats": {}})
    assert load_sender_allowlist(path, fail_closed=False).default.allow == "*"


def test_allow_string_other_than_star_is_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, {"default": {"allow": "alice", "mode": "trigger"}})
    assert load_sender_allowlist(path, fail_closed=False) == ALLOW_ALL


def test_unknown_mode_is_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, {"default": {"allow": "*", "mode": "mute"}})
    assert load_sender_allowlist(path, fail_closed=False) == ALLOW_ALL


def test_invalid_per_chat_entry_is_skipped_and_valid_ones_kept(tmp_path: Path, caplog) -> None:
    path = write(
        tmp_path,
        {
            "default": {"allow": "*", "mode": "trigger"},
            "chats": {"good": {"allow": ["alice"], "mode": "trigger"}, "bad": {"allow": 123}},
        },
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded.default.allow == "*"
    assert set(loaded.chats) == {"good"}
    assert loaded.chats["good"].allow == ("alice",)
    [record] = caplog.records
    assert "'bad'" in record.getMessage() and "skipping" in record.getMessage() and str(path) in record.getMessage()


def test_chats_that_is_not_an_object_is_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, {"default": {"allow": ["alice"], "mode": "trigger"}, "chats": ["g1"]})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded.default.allow == ("alice",) and loaded.chats == {}
    assert "'chats' must be an object" in caplog.records[0].getMessage()


def test_missing_file_is_not_a_warning_when_failing_open(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        load_sender_allowlist(tmp_path / "absent.json", fail_closed=False)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_unreadable_path_falls_back_and_warns(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_sender_allowlist(tmp_path, fail_closed=False) == ALLOW_ALL  # a directory
    assert "cannot be read" in caplog.records[0].getMessage()


def test_yaml_file_is_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "default: {allow: '*', mode: trigger}\nchats:\n  g1@g.us: {allow: [alice], mode: drop}\nlogDenied: false\n",
        name="sender-allowlist.yaml",
    )
    loaded = load_sender_allowlist(path, fail_closed=False)
    assert loaded.chats["g1@g.us"] == ChatAllowlistEntry(allow=("alice",), mode="drop")
    assert loaded.log_denied is False


def test_invalid_yaml_warns_naming_file_and_problem(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, "default: {allow: [unclosed\n", name="sender-allowlist.yml")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_sender_allowlist(path, fail_closed=False) == ALLOW_ALL
    message = caplog.records[0].getMessage()
    assert str(path) in message and "invalid YAML" in message and "line" in message
    assert "\n" not in message


# --- loadSenderAllowlist, fail-closed ---------------------------------------------------------------


def test_fail_closed_missing_file_denies_everyone_and_warns(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = load_sender_allowlist(tmp_path / "absent.json", fail_closed=True)
    assert loaded == DENY_ALL
    assert not is_sender_allowed(loaded, "g1", "anyone")
    assert "fail-closed" in caplog.records[0].getMessage()


def test_fail_closed_invalid_json_denies_everyone_and_warns(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, "{ nope")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_sender_allowlist(path, fail_closed=True) == DENY_ALL
    message = caplog.records[0].getMessage()
    assert str(path) in message and "invalid JSON" in message and "fail-closed" in message


def test_fail_closed_keeps_messages_as_context_rather_than_dropping_them() -> None:
    assert DENY_ALL.default.mode == "trigger"
    assert not should_drop_message(DENY_ALL, "g1", "stranger", is_from_me=False, is_bot=False)


def test_fail_closed_still_lets_the_owner_trigger() -> None:
    group = Group(jid="g1", name="G", folder="g1", trigger="@Andy")
    mine = StoredMessage("1", "g1", "me", "Me", "@Andy hi", "2024-01-01T00:00:00.000Z", is_from_me=True)
    theirs = StoredMessage("2", "g1", "eve", "Eve", "@Andy hi", "2024-01-01T00:00:01.000Z")
    allowed = functools.partial(is_trigger_allowed, DENY_ALL)
    assert should_trigger(group, [mine], "Andy", allowed)
    assert not should_trigger(group, [theirs], "Andy", allowed)


def test_fail_closed_invalid_per_chat_entry_denies_that_chat_instead_of_using_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"default": {"allow": "*", "mode": "trigger"}, "chats": {"locked": {"allow": ["boss", 7], "mode": "trigger"}}},
    )
    loaded = load_sender_allowlist(path, fail_closed=True)
    assert loaded.chats["locked"] == DENY_ENTRY
    assert not is_sender_allowed(loaded, "locked", "boss")
    assert is_sender_allowed(loaded, "elsewhere", "anyone")


def test_fail_closed_chats_that_is_not_an_object_denies_everyone(tmp_path: Path) -> None:
    path = write(tmp_path, {"default": {"allow": "*", "mode": "trigger"}, "chats": "oops"})
    assert load_sender_allowlist(path, fail_closed=True) == DENY_ALL


def test_fail_closed_valid_file_is_loaded_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, {"default": {"allow": "*", "mode": "trigger"}})
    assert load_sender_allowlist(path, fail_closed=True) == ALLOW_ALL


# --- isSenderAllowed --------------------------------------------------------------------------------


def test_allow_star_allows_any_sender() -> None:
    assert is_sender_allowed(cfg({"allow": "*", "mode": "trigger"}), "g1", "anyone")


def test_empty_allow_list_denies_any_sender() -> None:
    assert not is_sender_allowed(cfg({"allow": [], "mode": "trigger"}), "g1", "anyone")


def test_allow_list_allows_exact_matches_only() -> None:
    rules = cfg({"allow": ["alice", "bob"], "mode": "trigger"})
    assert is_sender_allowed(rules, "g1", "alice")
    assert not is_sender_allowed(rules, "g1", "eve")
    assert not is_sender_allowed(rules, "g1", "Alice")
    assert not is_sender_allowed(rules, "g1", "alice@s.whatsapp.net")


def test_star_inside_a_list_is_a_literal_sender_id() -> None:
    assert not is_sender_allowed(cfg({"allow": ["*"], "mode": "trigger"}), "g1", "anyone")


def test_per_chat_entry_beats_the_default() -> None:
    rules = cfg({"allow": "*", "mode": "trigger"}, {"g1": {"allow": ["alice"], "mode": "trigger"}})
    assert not is_sender_allowed(rules, "g1", "bob")
    assert is_sender_allowed(rules, "g2", "bob")
    assert entry_for(rules, "g2") == rules.default


# --- shouldDropMessage ------------------------------------------------------------------------------


def test_trigger_mode_never_drops() -> None:
    rules = cfg({"allow": [], "mode": "trigger"})
    assert not should_drop_message(rules, "g1", "eve", is_from_me=False, is_bot=False)


def test_drop_mode_drops_senders_not_allowed() -> None:
    rules = cfg({"allow": ["alice"], "mode": "drop"})
    assert should_drop_message(rules, "g1", "eve", is_from_me=False, is_bot=False)
    assert not should_drop_message(rules, "g1", "alice", is_from_me=False, is_bot=False)


def test_drop_mode_with_allow_star_drops_nobody() -> None:
    assert not should_drop_message(cfg({"allow": "*", "mode": "drop"}), "g1", "eve", is_from_me=False, is_bot=False)


def test_drop_mode_never_drops_my_own_or_the_bots_messages() -> None:
    rules = cfg({"allow": [], "mode": "drop"})
    assert not should_drop_message(rules, "g1", "me", is_from_me=True, is_bot=False)
    assert not should_drop_message(rules, "g1", "bot", is_from_me=False, is_bot=True)


def test_per_chat_mode_overrides_the_default_mode() -> None:
    rules = cfg({"allow": ["alice"], "mode": "trigger"}, {"g1": {"allow": ["alice"], "mode": "drop"}})
    assert should_drop_message(rules, "g1", "eve", is_from_me=False, is_bot=False)
    assert not should_drop_message(rules, "g2", "eve", is_from_me=False, is_bot=False)


# --- isTriggerAllowed -------------------------------------------------------------------------------


def test_trigger_allowed_for_allowed_sender() -> None:
    assert is_trigger_allowed(cfg({"allow": ["alice"], "mode": "trigger"}, log_denied=False), "g1", "alice")


def test_trigger_denied_for_sender_not_allowed() -> None:
    assert not is_trigger_allowed(cfg({"allow": ["alice"], "mode": "trigger"}, log_denied=False), "g1", "eve")


def test_denied_trigger_is_logged_when_log_denied(caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        is_trigger_allowed(cfg({"allow": ["alice"], "mode": "trigger"}, log_denied=True), "g1", "eve")
    [record] = caplog.records
    assert "eve" in record.getMessage() and "g1" in record.getMessage()


def test_denied_trigger_is_not_logged_when_log_denied_is_false(caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        is_trigger_allowed(cfg({"allow": ["alice"], "mode": "trigger"}, log_denied=False), "g1", "eve")
    assert caplog.records == []


# --- Model --------------------------------------------------------------------------------------------


def test_config_is_immutable() -> None:
    with pytest.raises(ValidationError):
        ALLOW_ALL.log_denied = False  # type: ignore[misc]


# --- Properties ---------------------------------------------------------------------------------------

_SENDERS = st.sampled_from(["alice", "bob", "eve", "*"])


@given(st.lists(_SENDERS, unique=True), _SENDERS, st.sampled_from(["trigger", "drop"]), st.booleans(), st.booleans())
def test_property_owner_and_bot_are_never_dropped_and_allowed_senders_never_dropped(
    allow, sender, mode, from_me, is_bot
) -> None:
    rules = cfg({"allow": allow, "mode": mode})
    dropped = should_drop_message(rules, "g1", sender, is_from_me=from_me, is_bot=is_bot)
    assert dropped == (mode == "drop" and not from_me and not is_bot and sender not in allow)
