"""The read models as they were at a past moment: every projection replayed up to a stream sequence, or up to the
last commit the stream had stored at a given time.

"What did the system know on Tuesday at 10:00?" is answered with the stream's own storage time
(``Nats-Time-Stamp``, stamped by the server when it stored the message), not the events' ``time`` attribute,
which the writing service sets and which a late or retried commit may carry from earlier. Storage times grow
with the sequence on one server's clock (the stream leader's), so the last sequence stored at or before a time
is found by a binary search over direct gets (O(log n) requests). A clock stepped back on the server could
break that order; :func:`seq_at` then answers for one of the moments the clock showed that time, and says so
in no way: the sequence form (``--until-seq``) is the exact one.

The result always goes into a new database in a directory of the caller's choosing, never over the live read
models (:class:`AsOfError` refuses a target that is the live database).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from events.store.port import EventStore
from projections.audit import AuditError, rebuild
from projections.base import Projection
from projections.runner import Progress

StoredAt = Callable[[int], Awaitable[datetime | None]]
"""``stored_at(seq)``: when the stream stored message ``seq`` (UTC), None if the stream has no message there."""

AS_OF_DB = "readmodels.db"
"""The database file :func:`rebuild_as_of` writes inside its output directory."""


class AsOfError(AuditError):
    """The point in time cannot be rebuilt as asked (bad target, a time before the first event, ...)."""


@dataclass(frozen=True)
class AsOfResult:
    """What :func:`rebuild_as_of` wrote: the database, the last stream sequence included (0: nothing was stored
    yet) and how many events the projections applied."""

    db: Path
    seq: int
    applied: int


def parse_time(text: str) -> datetime:
    """An ISO 8601 date-time (``2026-03-03T10:00``, ``…Z``, ``…+01:00``, or a date alone); without an offset it
    is UTC. Raises ``ValueError`` naming the text when it is not one."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2026-03-03T10:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


async def seq_at(when: datetime, last_seq: int, stored_at: StoredAt) -> int:
    """The last stream sequence stored at or before ``when`` (0 if none), among ``1..last_seq``.

    A sequence with no message (never the case in ``NC_EVENTS``, which denies deletes; possible in a copy) is
    passed over to the next one that has one.
    """
    async def time_of(seq: int) -> tuple[int, datetime] | None:
        while seq <= last_seq:
            at = await stored_at(seq)
            if at is not None:
                return seq, at
            seq += 1
        return None

    lo, hi = 0, last_seq  # invariant: messages up to lo are at/before ``when``; messages after hi are after it
    while lo < hi:
        mid = (lo + hi + 1) // 2
        found = await time_of(mid)
        if found is None or found[1] > when:
            hi = mid - 1
        else:
            lo = found[0]
    return lo


def guard_target(out_dir: Path, live_db: Path | None) -> Path:
    """The database path inside ``out_dir``; refuses an ``out_dir`` that would hold the live database.

    Raises:
        AsOfError: the target is the live read-model database or its directory.
    """
    target = Path(out_dir) / AS_OF_DB
    if live_db is not None:
        live = Path(live_db).resolve()
        if target.resolve() == live or Path(out_dir).resolve() == live.parent:
            raise AsOfError(f"{out_dir} is the live read models' directory; an as-of rebuild goes into a directory "
                            "of its own")
    return target


async def rebuild_as_of(store: EventStore, out_dir: Path, projections: Sequence[Projection], *, until_seq: int,
                        live_db: Path | None = None, force: bool = False,
                        progress: Progress | None = None) -> AsOfResult:
    """Replay every projection up to stream sequence ``until_seq`` (included) into ``out_dir/readmodels.db``.
    The tables are then what a live read model held once it had applied ``until_seq`` and nothing after:
    projections are deterministic functions of the log (projections/base.py).

    Raises:
        AsOfError: ``until_seq`` is negative, or the target is the live database.
        AuditError: the target exists and ``force`` is false.
    """
    if until_seq < 0:
        raise AsOfError(f"--until-seq must be 0 or more, not {until_seq}")
    target = guard_target(out_dir, live_db)
    upto = min(until_seq, await store.last_seq())
    until = {p.name: upto for p in projections}
    applied = await rebuild(store, target, projections, force=force, progress=progress, until=until)
    return AsOfResult(target, upto, applied)
