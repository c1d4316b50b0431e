"""Reading the log for an auditor, without the CLI around it: safe text for a terminal, one aggregate's timeline,
and the export writers (JSON lines, SQLite). Used by services/cli/cmd_audit_log.py.

Every string of the log is data someone else wrote (a chat message, a group name): it is shown JSON-escaped, and
characters that could rewrite or hide what a terminal shows (controls, bidi overrides, zero-width and other
format characters, line separators) are escaped as ``\\uXXXX`` even where JSON would allow them raw.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from events.envelope import CloudEvent, decode_events
from events.errors import InvalidEvent
from events.store.port import RawMessage
from events.subjects import EVENT_STREAM
from projections.asof import AsOfError, StoredAt, parse_time, seq_at

_UNSAFE = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}


def safe_json(value: Any) -> str:
    """``value`` as JSON (non-ASCII letters kept readable), with every character a terminal could act on escaped:
    still valid JSON, since JSON syntax itself is ASCII and such characters can only sit inside strings."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(_escaped(c) if ord(c) >= 0x7F and unicodedata.category(c) in _UNSAFE else c for c in text)


def _escaped(c: str) -> str:
    """``\\uXXXX`` (a surrogate pair above the basic plane, as JSON writes them)."""
    cp = ord(c)
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def utc_text(when: datetime | None) -> str:
    """``2026-03-03T10:00:00.123456Z`` (UTC), or ``?`` when unknown."""
    if when is None:
        return "?"
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def js_stored_at(nc: Client, stream: str = EVENT_STREAM) -> StoredAt:
    """:data:`projections.asof.StoredAt` over direct gets on ``stream``."""
    js = nc.jetstream()

    async def stored_at(seq: int) -> datetime | None:
        try:
            msg = await js.get_msg(stream, seq, direct=True)
        except NotFoundError:
            return None
        except nats.errors.TimeoutError as exc:
            raise AsOfError(f"no answer to a direct get of seq {seq} on {stream} (is the stream reachable?)") from exc
        return msg.time
    return stored_at


@dataclass(frozen=True)
class Bound:
    """One end of a range, given as a stream sequence or as a time."""

    seq: int | None = None
    time: datetime | None = None

    @classmethod
    def parse(cls, text: str | None) -> "Bound | None":
        """``"120"`` (a stream sequence) or an ISO 8601 time. Raises ``ValueError`` naming the text."""
        if text is None:
            return None
        if text.strip().isdigit():
            return cls(seq=int(text))
        return cls(time=parse_time(text))


async def seq_range(start: Bound | None, end: Bound | None, last_seq: int, stored_at: StoredAt) -> tuple[int, int]:
    """``(first, last)`` stream sequences (both included) a ``--from``/``--to`` pair selects: from the first message
    stored at/after the start time, to the last stored at/before the end time. ``first > last`` means nothing."""
    first, last = 1, last_seq
    if start is not None and start.seq is not None:
        first = max(start.seq, 1)
    elif start is not None and start.time is not None:
        first = await _last_before(start.time, last_seq, stored_at) + 1
    if end is not None and end.seq is not None:
        last = min(end.seq, last_seq)
    elif end is not None and end.time is not None:
        last = await seq_at(end.time, last_seq, stored_at)
    return first, last


async def _last_before(when: datetime, last_seq: int, stored_at: StoredAt) -> int:
    """The last sequence stored strictly before ``when`` (storage times have microsecond precision here)."""
    return await seq_at(when - timedelta(microseconds=1), last_seq, stored_at)


# --- one message as data ------------------------------------------------------------------------------------------

def message_record(raw: RawMessage) -> dict[str, Any]:
    """One stream message as an export record: ``seq``, ``subject``, ``stored_at``, ``headers`` and either
    ``events`` (the CloudEvents of a valid commit) or ``invalid`` (why not) with the body as ``data_base64``."""
    rec: dict[str, Any] = {"seq": raw.seq, "subject": raw.subject, "stored_at": utc_text(raw.stored_at),
                           "headers": dict(raw.headers or {})}
    try:
        rec["events"] = [e.model_dump(mode="json", exclude_none=True) for e in decode_events(raw.data)]
    except InvalidEvent as exc:
        rec["invalid"] = str(exc)
        rec["data_base64"] = base64.b64encode(raw.data).decode()
    return rec


def timeline_entries(raw: RawMessage) -> list[tuple[RawMessage, CloudEvent | None, str | None]]:
    """The events of one message for a timeline: ``(raw, event, None)`` each, or ``(raw, None, reason)``."""
    try:
        return [(raw, e, None) for e in decode_events(raw.data)]
    except InvalidEvent as exc:
        return [(raw, None, str(exc))]


def timeline_lines(raw: RawMessage, event: CloudEvent | None, problem: str | None) -> list[str]:
    """A readable entry: a head line (sequence, storage time, aggregate and version, type, writer, correlation)
    and one indented line per payload field, every value through :func:`safe_json`."""
    if event is None:
        return [f"#{raw.seq}  {utc_text(raw.stored_at)}  {safe_json(raw.subject)[1:-1]}  UNREADABLE: "
                f"{safe_json(problem)[1:-1]}"]
    source = event.source.removeprefix("nanoclaw-bus/")
    head = (f"#{raw.seq}  {utc_text(raw.stored_at)}  {event.aggregatecontext}.{event.aggregatetype} "
            f"v{event.aggregateversion}  {safe_json(event.eventtype)[1:-1]}  by {safe_json(source)[1:-1]}"
            f"  corr={safe_json(event.correlationid or '-')[1:-1][:8]}")
    return [head, *(f"    {safe_json(k)[1:-1]}: {safe_json(v)}" for k, v in event.data.items())]


def event_line(raw: RawMessage, event: CloudEvent | None, problem: str | None) -> str:
    """One NDJSON line of ``audit show --json``: ``{"seq", "subject", "stored_at", "event"}`` or ``"invalid"``."""
    rec: dict[str, Any] = {"seq": raw.seq, "subject": raw.subject, "stored_at": utc_text(raw.stored_at)}
    if event is None:
        rec["invalid"] = problem
    else:
        rec["event"] = event.model_dump(mode="json", exclude_none=True)
    return safe_json(rec)


# --- export writers -----------------------------------------------------------------------------------------------

class ExportWriter:
    """Writes records into ``<target>.partial`` and renames it to ``target`` on :meth:`commit`: an interrupted
    export leaves no file that looks complete. Raises ``FileExistsError`` when ``target`` exists."""

    def __init__(self, target: Path):
        self.target = Path(target)
        if self.target.exists():
            raise FileExistsError(f"{self.target} exists; choose a new path or pass --force to replace it")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.target.with_name(self.target.name + ".partial")
        self.partial.unlink(missing_ok=True)

    def write(self, raw: RawMessage) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        os.replace(self.partial, self.target)

    def abort(self) -> None:
        self.partial.unlink(missing_ok=True)


class JsonLinesWriter(ExportWriter):
    """One :func:`message_record` per line, UTF-8, in stream order."""

    def __init__(self, target: Path):
        super().__init__(target)
        self._fh = open(self.partial, "w", encoding="utf-8")

    def write(self, raw: RawMessage) -> None:
        self._fh.write(json.dumps(message_record(raw), ensure_ascii=False, separators=(",", ":")) + "\n")

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        super().commit()

    def abort(self) -> None:
        self._fh.close()
        super().abort()


SQLITE_SCHEMA = """
CREATE TABLE messages (seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, stored_at TEXT NOT NULL,
                       headers TEXT NOT NULL, body BLOB NOT NULL, invalid TEXT);
CREATE TABLE events (seq INTEGER NOT NULL REFERENCES messages(seq), idx INTEGER NOT NULL, id TEXT NOT NULL,
                     type TEXT NOT NULL, context TEXT NOT NULL, aggregate_type TEXT NOT NULL,
                     aggregate_id TEXT NOT NULL, aggregate_version INTEGER NOT NULL, time TEXT NOT NULL,
                     source TEXT NOT NULL, correlation_id TEXT, causation_id TEXT, data TEXT NOT NULL,
                     PRIMARY KEY (seq, idx));
CREATE INDEX events_aggregate ON events(aggregate_id, seq);
CREATE INDEX events_type ON events(type, seq);
"""
"""``messages``: every stream message as stored (``body`` the exact bytes; ``invalid`` why it is not a commit);
``events``: the events of the valid ones, one row each, ``data`` as JSON."""


class SqliteWriter(ExportWriter):
    """Tables of :data:`SQLITE_SCHEMA`, committed in batches of 1,000 messages."""

    def __init__(self, target: Path):
        super().__init__(target)
        self._db = sqlite3.connect(self.partial)
        self._db.executescript(SQLITE_SCHEMA)
        self._pending = 0

    def write(self, raw: RawMessage) -> None:
        rec = message_record(raw)
        self._db.execute("INSERT INTO messages VALUES (?,?,?,?,?,?)",
                         (raw.seq, raw.subject, rec["stored_at"], json.dumps(rec["headers"]), raw.data,
                          rec.get("invalid")))
        for idx, e in enumerate(rec.get("events", ())):
            self._db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                             (raw.seq, idx, e["id"], e["eventtype"], e["aggregatecontext"], e["aggregatetype"],
                              e["aggregateid"], e["aggregateversion"], e["time"], e["source"],
                              e.get("correlationid"), e.get("causationid"), json.dumps(e["data"], ensure_ascii=False)))
        self._pending += 1
        if self._pending >= 1000:
            self._db.commit()
            self._pending = 0

    def commit(self) -> None:
        self._db.commit()
        self._db.close()
        super().commit()

    def abort(self) -> None:
        self._db.close()
        super().abort()


WRITERS: dict[str, type[ExportWriter]] = {"jsonl": JsonLinesWriter, "sqlite": SqliteWriter}


def writer_for(fmt: str, target: Path, *, force: bool = False) -> ExportWriter:
    """Raises ``ValueError`` for an unknown format, ``FileExistsError`` for an existing target without ``force``."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown export format {fmt!r}; choose {' or '.join(WRITERS)}")
    if force:
        Path(target).unlink(missing_ok=True)
    return WRITERS[fmt](target)
