"""Chat-path read models with NanoClaw v1's table and column names (nanoclaw-behaviour §15):
``chats``, ``messages``, ``registered_groups``, ``router_state``; plus ``agent_runs`` (runs and their state).

Rules kept from v1: chat names default to the JID and are only overwritten by a real name; ``last_message_time``
only moves forward; messages are stored only for chats registered at that point of the log (v1 stored only
registered chats' content); timestamps are ISO-8601 UTC strings compared as strings.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from projections.base import EventRecord, Projection


class Chats(Projection):
    name = "chats"
    version = 1
    tables = {"chats": """CREATE TABLE IF NOT EXISTS chats (
        jid TEXT PRIMARY KEY, name TEXT, last_message_time TEXT, channel TEXT, is_group INTEGER DEFAULT 0)"""}
    event_types = frozenset({"MessageReceived", "ChatNameSynced"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type == "ChatNameSynced":
            db.execute("INSERT INTO chats(jid, name, channel, is_group) VALUES (?,?,?,?) "
                       "ON CONFLICT(jid) DO UPDATE SET name = excluded.name",
                       (d["chat_jid"], d["name"], d["channel"], int(d.get("is_group", True))))
            return
        name = d.get("chat_name")
        db.execute(
            "INSERT INTO chats(jid, name, last_message_time, channel, is_group) VALUES (?,?,?,?,?) "
            "ON CONFLICT(jid) DO UPDATE SET "
            " name = CASE WHEN ? IS NOT NULL THEN excluded.name ELSE chats.name END,"
            " last_message_time = MAX(COALESCE(chats.last_message_time, ''), excluded.last_message_time),"
            " channel = COALESCE(excluded.channel, chats.channel), is_group = COALESCE(excluded.is_group, chats.is_group)",
            (d["chat_jid"], name or d["chat_jid"], d["timestamp"], d["channel"], int(d.get("is_group", False)), name),
        )


class Queryable(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


@dataclass(frozen=True)
class GroupRef:
    """A registered group as the services that act for it need it: its chat, folder and main flag."""

    jid: str
    folder: str
    is_main: bool


def group_refs(rm: Queryable, *, jid: str | None = None, folder: str | None = None) -> list[GroupRef]:
    """Registered groups from a read model holding ``registered_groups``: all of them (by folder), or the one
    with ``jid`` or ``folder``."""
    where, params = ("WHERE jid = ?", (jid,)) if jid is not None else ("WHERE folder = ?", (folder,)) \
        if folder is not None else ("", ())
    rows = rm.query(f"SELECT jid, folder, is_main FROM registered_groups {where} ORDER BY folder", params)
    return [GroupRef(r["jid"], r["folder"], bool(r["is_main"])) for r in rows]


def group_by_jid(rm: Queryable, jid: str) -> GroupRef | None:
    """The registered group of chat ``jid``, if any."""
    return next(iter(group_refs(rm, jid=jid)), None)


def group_by_folder(rm: Queryable, folder: str) -> GroupRef | None:
    """The registered group with folder ``folder``, if any."""
    return next(iter(group_refs(rm, folder=folder)), None)


class RegisteredGroups(Projection):
    name = "registered_groups"
    version = 1
    tables = {"registered_groups": """CREATE TABLE IF NOT EXISTS registered_groups (
        jid TEXT PRIMARY KEY, name TEXT NOT NULL, folder TEXT NOT NULL UNIQUE, trigger_pattern TEXT NOT NULL,
        added_at TEXT NOT NULL, container_config TEXT, requires_trigger INTEGER DEFAULT 1, is_main INTEGER DEFAULT 0)"""}
    event_types = frozenset({"GroupRegistered", "GroupReinstated", "GroupUpdated", "GroupRemoved"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type in ("GroupRegistered", "GroupReinstated"):
            db.execute("INSERT OR REPLACE INTO registered_groups VALUES (?,?,?,?,?,?,?,?)",
                       (d["jid"], d["name"], d["folder"], d["trigger"], d["added_at"], _json(d.get("container_config")),
                        int(d.get("requires_trigger", True)), int(d.get("is_main", False))))
        elif record.type == "GroupUpdated":
            for field, column in (("name", "name"), ("trigger", "trigger_pattern"), ("requires_trigger", "requires_trigger")):
                if d.get(field) is not None:
                    db.execute(f"UPDATE registered_groups SET {column} = ? WHERE jid = ?", (d[field], d["jid"]))
            if d.get("container_config") is not None:
                db.execute("UPDATE registered_groups SET container_config = ? WHERE jid = ?", (_json(d["container_config"]), d["jid"]))
        else:
            db.execute("DELETE FROM registered_groups WHERE jid = ?", (d["jid"],))


class Messages(Projection):
    name = "messages"
    version = 1
    tables = {"messages": """CREATE TABLE IF NOT EXISTS messages (
        id TEXT, chat_jid TEXT, sender TEXT, sender_name TEXT, content TEXT, timestamp TEXT, is_from_me INTEGER,
        is_bot_message INTEGER DEFAULT 0, reply_to_message_id TEXT, reply_to_message_content TEXT,
        reply_to_sender_name TEXT, PRIMARY KEY (id, chat_jid));
        CREATE INDEX IF NOT EXISTS idx_timestamp ON messages(timestamp);
        CREATE INDEX IF NOT EXISTS idx_messages_chat ON messages(chat_jid, timestamp)"""}
    event_types = frozenset({"MessageReceived"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if db.execute("SELECT 1 FROM registered_groups WHERE jid = ?", (d["chat_jid"],)).fetchone() is None:
            return
        db.execute("INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (d["message_id"], d["chat_jid"], d["sender"], d["sender_name"], d["text"], d["timestamp"],
                    int(d.get("is_from_me", False)), int(d.get("is_bot_message", False)), d.get("reply_to_message_id"),
                    d.get("reply_to_text"), d.get("reply_to_sender_name")))


class RouterState(Projection):
    """``last_timestamp``: newest message time seen in a registered chat; ``last_agent_timestamp``: JSON map
    chat JID → agent cursor (as v1's router_state keys)."""

    name = "router_state"
    version = 1
    tables = {"router_state": "CREATE TABLE IF NOT EXISTS router_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"}
    event_types = frozenset({"MessageReceived", "AgentTurnRequested", "AgentInputAppended", "AgentCursorRolledBack"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type == "MessageReceived":
            if db.execute("SELECT 1 FROM registered_groups WHERE jid = ?", (d["chat_jid"],)).fetchone():
                db.execute("INSERT INTO router_state VALUES ('last_timestamp', ?) ON CONFLICT(key) DO UPDATE SET "
                           "value = MAX(value, excluded.value)", (d["timestamp"],))
            return
        row = db.execute("SELECT value FROM router_state WHERE key = 'last_agent_timestamp'").fetchone()
        cursors = json.loads(row[0]) if row else {}
        cursors[d["chat_jid"]] = d["cursor"]
        db.execute("INSERT OR REPLACE INTO router_state VALUES ('last_agent_timestamp', ?)", (json.dumps(cursors, sort_keys=True),))


class AgentRuns(Projection):
    """One row per agent run: which group, what kind, which turn, and its state."""

    name = "agent_runs"
    version = 1
    tables = {"agent_runs": """CREATE TABLE IF NOT EXISTS agent_runs (
        run_id TEXT PRIMARY KEY, chat_jid TEXT NOT NULL, group_folder TEXT NOT NULL, kind TEXT NOT NULL,
        turn_id TEXT, status TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, output_delivered INTEGER DEFAULT 0,
        error TEXT);
        CREATE INDEX IF NOT EXISTS idx_agent_runs_chat ON agent_runs(chat_jid, status)"""}
    event_types = frozenset({"AgentRunStarted", "AgentRunFinished"})

    def apply(self, db: sqlite3.Connection, record: EventRecord) -> None:
        d = record.data
        if record.type == "AgentRunStarted":
            db.execute("INSERT OR REPLACE INTO agent_runs(run_id, chat_jid, group_folder, kind, turn_id, status, started_at) "
                       "VALUES (?,?,?,?,?,'running',?)",
                       (d["run_id"], d["chat_jid"], d["group_folder"], d.get("kind", "message"), d.get("turn_id"), record.event["time"]))
        else:
            db.execute("UPDATE agent_runs SET status = ?, finished_at = ?, output_delivered = ?, error = ? WHERE run_id = ?",
                       (d["status"], record.event["time"], int(d.get("output_delivered", False)), d.get("error"), d["run_id"]))


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def chat_projections() -> list[Projection]:
    """In dependency order: ``messages`` reads ``registered_groups`` at apply time."""
    return [*router_projections(), AgentRuns()]


def router_projections() -> list[Projection]:
    """The router's own read model: groups, chats, messages and its cursor. No ``agent_runs``: the router keeps
    no opinion of a run's state (the queue owns the run lifecycle, docs/agent-runs.md)."""
    return [RegisteredGroups(), Chats(), Messages(), RouterState()]
