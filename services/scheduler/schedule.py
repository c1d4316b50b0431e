"""When a task is due: parsing and validating schedules, and the next due time after a given instant.

All instants are aware datetimes; they are stored as ISO-8601 UTC strings. Rules:

- ``cron``: 5 fields, evaluated in the task's IANA time zone with croniter from a ``ZoneInfo``-aware base
  (a fixed-offset or UTC base would keep the winter offset after a DST change: stack notes §6 pitfall 2).
  Spring gap: a time that does not exist fires at the first valid instant (croniter does this). Fall back:
  a job whose hour field names hours (not ``*`` or ``*/n``) fires once, as Vixie cron and cronie do; hourly
  and sub-hourly jobs fire in both folds (both are real hours).
- ``interval``: a positive whole number of milliseconds, anchored to the previous due time (no drift); as
  NanoClaw v1 computeNextRun.
- ``once``: a local date-time (``2026-02-01T15:30:00``) read in the task's time zone, not the host's (v1
  quirk 7), or one with an explicit offset/``Z``. A local time in the spring gap fires at the first valid
  instant; an ambiguous one (fall back) at its first occurrence.

The next due time is always strictly after the instant it is computed from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from events.catalogue.scheduler import ScheduleType

SCHEDULE_TYPES: tuple[str, ...] = get_args(ScheduleType)


class ScheduleError(ValueError):
    """A schedule (type, value or time zone) is invalid; the message names the problem."""


@dataclass(frozen=True)
class Schedule:
    """A validated schedule. ``value``: the cron expression, the interval in ms (as text), or the once time."""

    type: ScheduleType
    value: str
    tz: str

    @classmethod
    def parse(cls, type_: str, value: str, tz: str) -> "Schedule":
        """Raises: ScheduleError naming the bad type, value or time zone."""
        zone(tz)
        if type_ not in SCHEDULE_TYPES:
            raise ScheduleError(f"schedule_type must be one of cron, interval, once; got {type_!r}")
        if not isinstance(value, str) or not value.strip():
            raise ScheduleError("schedule_value must be a non-empty string")
        value = value.strip()
        schedule = cls(type_, value, tz)  # type: ignore[arg-type]
        if type_ == "cron":
            if len(value.split()) != 5 or not croniter.is_valid(value):
                raise ScheduleError(f"invalid cron expression {value!r}: expected 5 fields such as '0 9 * * 1-5'")
        elif type_ == "interval":
            schedule.interval_ms()
        else:
            schedule.once_at()
        return schedule

    def interval_ms(self) -> int:
        if not self.value.isdigit() or int(self.value) <= 0:
            raise ScheduleError(f"invalid interval {self.value!r}: expected a positive whole number of milliseconds")
        return int(self.value)

    def once_at(self) -> datetime:
        """The instant of a ``once`` schedule (UTC)."""
        try:
            local = datetime.fromisoformat(self.value.replace("Z", "+00:00"))
        except ValueError:
            raise ScheduleError(f"invalid time {self.value!r}: expected a local time such as 2026-02-01T15:30:00 "
                                "(or one with an offset)") from None
        if local.tzinfo is None:
            local = _resolve_local(local, zone(self.tz))
        return local.astimezone(timezone.utc)

    def first_due(self, now: datetime) -> datetime | None:
        """The first due time of a new (or changed) task: the next occurrence after ``now`` (cron), ``now +
        interval`` (interval), or the once time, even when it is past (it then runs at once, as v1)."""
        if self.type == "once":
            return self.once_at()
        return self.next_after(now, now)

    def next_after(self, last_due: datetime, now: datetime | None = None) -> datetime | None:
        """The first due time strictly after ``last_due`` (None for ``once``: it has no next). With ``now``,
        the first one strictly after ``max(last_due, now)`` for cron; for interval the one anchored on
        ``last_due`` that is after ``now`` (missed intervals skipped)."""
        if self.type == "once":
            return None
        if self.type == "interval":
            step = timedelta(milliseconds=self.interval_ms())
            nxt = last_due + step
            if now is not None and nxt <= now:
                nxt += step * ((now - nxt) // step + 1)
            return nxt
        return _cron_next(self.value, max(last_due, now) if now is not None else last_due, zone(self.tz))

    def due_times(self, first: datetime, now: datetime, limit: int) -> Iterator[datetime]:
        """Due times from ``first`` up to ``now`` inclusive, at most ``limit`` of them (the catch-up plan)."""
        due: datetime | None = first
        count = 0
        while due is not None and due <= now and count < limit:
            yield due
            count += 1
            due = self.next_after(due)


def zone(tz: str) -> ZoneInfo:
    """Raises: ScheduleError for a name that is not an IANA time zone."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(f"unknown time zone {tz!r}: expected an IANA name such as Europe/Berlin") from None


def local_time(when: str | None, tz: str, missing: str = "N/A") -> str:
    """An ISO UTC time as wall-clock text in ``tz`` (``2026-03-01 09:00 CET``); ``missing`` for None."""
    if not when:
        return missing
    return datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def _resolve_local(local: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``tz``: the first occurrence if it is ambiguous, the first valid instant
    after the gap if it does not exist."""
    aware = local.replace(tzinfo=tz, fold=0)
    if aware.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) == local:
        return aware
    # Nonexistent: the wall clock jumped over it. The transition instant is where the later offset starts.
    before = local.replace(tzinfo=tz, fold=0).utcoffset()
    after = local.replace(tzinfo=tz, fold=1).utcoffset()
    assert before is not None and after is not None
    instant = (local - min(before, after)).replace(tzinfo=timezone.utc)  # an instant inside the gap's window
    lo, hi = instant - abs(after - before), instant + abs(after - before)
    while hi - lo > timedelta(seconds=1):  # find the transition to the second
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0).astimezone(tz)


def _names_hours(expr: str) -> bool:
    hour = expr.split()[1]
    return not (hour == "*" or hour.startswith("*/"))


def _cron_next(expr: str, after: datetime, tz: ZoneInfo) -> datetime:
    base = after.astimezone(tz)  # a ZoneInfo-aware base, never a fixed offset
    it = croniter(expr, base)
    nxt: datetime = it.get_next(datetime)
    while nxt <= after or (_names_hours(expr) and _same_wall_clock(nxt, base)):
        # the second fold of a fixed-hour job on the fall-back day repeats the wall-clock time just fired
        nxt = it.get_next(datetime)
    return nxt.astimezone(timezone.utc)


def _same_wall_clock(a: datetime, b: datetime) -> bool:
    return (a.date(), a.hour, a.minute) == (b.date(), b.hour, b.minute) and a.utcoffset() != b.utcoffset()
