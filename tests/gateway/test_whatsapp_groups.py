"""Group-name sync (nanoclaw-behaviour §21.5, §24.3 "Group sync")."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from neonize.exc import GetJoinedGroupsError

from services.gateway.whatsapp.groups import group_sync_due, sync_group_names

NOW = datetime(2024, 1, 2, 12, 0, tzinfo=timezone.utc)


class FakePort:
    def __init__(self, groups=None, error=None) -> None:
        self.groups, self.error = groups or [], error

    async def joined_groups(self):
        if self.error:
            raise self.error
        return self.groups


async def test_sync_emits_one_chat_name_per_group_with_a_subject():
    port = FakePort([("120363001@g.us", "Family"), ("120363002@g.us", "  Book club "), ("120363003@g.us", ""),
                     ("120363004@g.us", "   ")])
    synced = await sync_group_names(port, NOW)
    assert [(s.chat_jid, s.name, s.is_group, s.channel) for s in synced] == [
        ("120363001@g.us", "Family", True, "whatsapp"), ("120363002@g.us", "Book club", True, "whatsapp")]
    assert {s.at for s in synced} == {"2024-01-02T12:00:00.000Z"}


async def test_a_group_listed_twice_is_synced_once_and_non_groups_are_ignored():
    port = FakePort([("120363001@g.us", "Old"), ("120363001@g.us", "New"), ("1555@s.whatsapp.net", "Bob")])
    assert [(s.chat_jid, s.name) for s in await sync_group_names(port, NOW)] == [("120363001@g.us", "New")]


async def test_a_fetch_failure_propagates_so_the_caller_keeps_its_last_sync_time():
    with pytest.raises(GetJoinedGroupsError):
        await sync_group_names(FakePort(error=GetJoinedGroupsError("not connected")), NOW)
    assert group_sync_due(None, NOW)  # nothing recorded → still due


def test_sync_is_due_on_first_connect():
    assert group_sync_due(None, NOW)


def test_sync_is_skipped_within_24_hours_and_due_after():
    assert not group_sync_due(NOW - timedelta(hours=23, minutes=59), NOW)
    assert group_sync_due(NOW - timedelta(hours=24), NOW)


def test_force_ignores_the_24_hour_cache():
    assert group_sync_due(NOW - timedelta(minutes=1), NOW, force=True)


def test_a_last_sync_in_the_future_counts_as_due_so_a_clock_step_cannot_stop_syncing():
    assert group_sync_due(NOW + timedelta(hours=2), NOW)
