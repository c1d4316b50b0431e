"""Schedule parsing and next-due rules: v1's schedule-type checks (nanoclaw-behaviour §24 ipc-auth) and the DST
cases of stack notes §6 in Europe/Berlin and America/Toronto, spring and fall."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.scheduler.schedule import Schedule, ScheduleError

BERLIN, TORONTO = "Europe/Berlin", "America/Toronto"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def fires(expr: str, start_local: str, n: int, tz: str) -> list[str]:
    """The next ``n`` fire times after ``start_local`` (wall clock in ``tz``), each computed from the last fire,
    as local ISO strings with offsets."""
    spec = Schedule.parse("cron", expr, tz)
    t = datetime.fromisoformat(start_local).replace(tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)
    out = []
    for _ in range(n):
        nxt = spec.next_after(t)
        assert nxt > t  # always strictly after the last fire
        t = nxt
        out.append(t.astimezone(ZoneInfo(tz)).isoformat(timespec="minutes"))
    return out


def test_a_daily_cron_gets_a_next_run_in_the_future():
    assert Schedule.parse("cron", "0 9 * * *", "UTC").first_due(NOW) == datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("type_,value", [("cron", "not a cron"), ("cron", "61 * * * *"), ("cron", "* * * * * *"),
                                         ("interval", "abc"), ("interval", "0"), ("interval", "-5"),
                                         ("once", "not-a-date"), ("weekly", "1"), ("cron", "  ")])
def test_an_invalid_schedule_is_refused_with_an_error_naming_it(type_, value):
    with pytest.raises(ScheduleError) as err:
        Schedule.parse(type_, value, "UTC")
    assert (value.strip() or "non-empty") in str(err.value) or type_ in str(err.value)


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(ScheduleError, match="Mars/Olympus"):
        Schedule.parse("cron", "0 9 * * *", "Mars/Olympus")


def test_an_interval_is_due_one_interval_from_now():
    assert Schedule.parse("interval", "3600000", "UTC").first_due(NOW) == NOW + timedelta(hours=1)


def test_an_interval_is_anchored_to_the_previous_due_time_and_skips_missed_intervals():
    spec = Schedule.parse("interval", "600000", "UTC")  # 10 minutes
    due = NOW
    assert spec.next_after(due, NOW + timedelta(seconds=7)) == NOW + timedelta(minutes=10)  # a late fire adds no drift
    assert spec.next_after(due, NOW + timedelta(minutes=35)) == NOW + timedelta(minutes=40)


def test_a_once_time_is_read_in_the_task_time_zone_not_the_hosts():
    assert Schedule.parse("once", "2026-02-01T15:30:00", TORONTO).once_at() == datetime(2026, 2, 1, 20, 30, tzinfo=timezone.utc)
    assert Schedule.parse("once", "2026-02-01T15:30:00", BERLIN).once_at() == datetime(2026, 2, 1, 14, 30, tzinfo=timezone.utc)


def test_a_once_time_with_an_explicit_offset_is_taken_as_given():
    assert Schedule.parse("once", "2026-02-01T15:30:00Z", BERLIN).once_at() == datetime(2026, 2, 1, 15, 30, tzinfo=timezone.utc)
    assert Schedule.parse("once", "2026-02-01T15:30:00-05:00", BERLIN).once_at() == datetime(2026, 2, 1, 20, 30, tzinfo=timezone.utc)


def test_a_once_time_inside_the_spring_gap_fires_at_the_first_valid_instant():
    at = Schedule.parse("once", "2026-03-29T02:30:00", BERLIN).once_at()
    assert at.astimezone(ZoneInfo(BERLIN)).isoformat() == "2026-03-29T03:00:00+02:00"
    at = Schedule.parse("once", "2026-03-08T02:15:00", TORONTO).once_at()
    assert at.astimezone(ZoneInfo(TORONTO)).isoformat() == "2026-03-08T03:00:00-04:00"


def test_an_ambiguous_once_time_on_the_fall_back_day_fires_at_its_first_occurrence():
    at = Schedule.parse("once", "2026-10-25T02:30:00", BERLIN).once_at()
    assert at.astimezone(ZoneInfo(BERLIN)).isoformat() == "2026-10-25T02:30:00+02:00"


def test_a_fixed_hour_job_in_the_spring_gap_fires_at_the_first_valid_instant():
    assert fires("30 2 * * *", "2026-03-27T12:00", 3, BERLIN) == [
        "2026-03-28T02:30+01:00", "2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"]
    assert fires("30 2 * * *", "2026-03-07T12:00", 2, TORONTO) == ["2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"]


def test_an_hourly_job_skips_the_missing_spring_hour():
    assert fires("0 * * * *", "2026-03-29T00:30", 3, BERLIN) == [
        "2026-03-29T01:00+01:00", "2026-03-29T03:00+02:00", "2026-03-29T04:00+02:00"]


def test_a_fixed_hour_job_fires_once_on_the_fall_back_day():
    assert fires("30 2 * * *", "2026-10-23T12:00", 3, BERLIN) == [
        "2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"]
    assert fires("30 1 * * *", "2026-10-31T12:00", 3, TORONTO) == [
        "2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00", "2026-11-03T01:30-05:00"]


def test_hourly_and_sub_hourly_jobs_fire_in_both_folds():
    assert fires("0 * * * *", "2026-10-25T00:30", 4, BERLIN) == [
        "2026-10-25T01:00+02:00", "2026-10-25T02:00+02:00", "2026-10-25T02:00+01:00", "2026-10-25T03:00+01:00"]
    assert fires("*/30 * * * *", "2026-11-01T00:45", 5, TORONTO) == [
        "2026-11-01T01:00-04:00", "2026-11-01T01:30-04:00", "2026-11-01T01:00-05:00", "2026-11-01T01:30-05:00",
        "2026-11-01T02:00-05:00"]


def test_a_daily_job_keeps_its_local_hour_across_a_dst_change():
    assert fires("0 9 * * *", "2026-03-06T12:00", 3, TORONTO) == [
        "2026-03-07T09:00-05:00", "2026-03-08T09:00-04:00", "2026-03-09T09:00-04:00"]


def test_the_next_run_computed_from_inside_the_repeated_hour_is_after_the_last_fire():
    spec = Schedule.parse("cron", "30 2 * * *", BERLIN)
    last = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)  # 02:30 CEST, the first fold
    now = last + timedelta(hours=1, minutes=10)  # 02:10 CET, inside the second fold
    assert spec.next_after(last, now).astimezone(ZoneInfo(BERLIN)).isoformat() == "2026-10-26T02:30:00+01:00"
