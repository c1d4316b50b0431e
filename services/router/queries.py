"""Queries on the router's private read model (projections.chat tables), returning the router's plain data."""

from __future__ import annotations

import json
import sqlite3
from typing import Protocol, Sequence

from services.router.model import Group, StoredMessage


class ReadModel(Protocol):
    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]: ...


def group(rm: ReadModel, jid: str) -> Group | None:
    rows = rm.query("SELECT * FROM registered_groups WHERE jid = ?", (jid,))
    return _group(rows[0]) if rows else None


def group_by_folder(rm: ReadModel, folder: str) -> Group | None:
    rows = rm.query("SELECT * FROM registered_groups WHERE folder = ?", (folder,))
    return _group(rows[0]) if rows else None


def groups(rm: ReadModel) -> list[Group]:
    return [_group(r) for r in rm.query("SELECT * FROM registered_groups ORDER BY folder")]


def _group(r: sqlite3.Row) -> Group:
    config = json.loads(r["container_config"]) if r["container_config"] else None
    return Group(r["jid"], r["name"], r["folder"], r["trigger_pattern"], bool(r["requires_trigger"]), bool(r["is_main"]), config)


def messages_from(rm: ReadModel, chat_jid: str, cursor: str) -> list[StoredMessage]:
    """A chat's stored messages with ``timestamp >= cursor``, oldest first and in arrival order within one
    timestamp (selection filters bots, empties and those at the cursor already handed over)."""
    rows = rm.query("SELECT * FROM messages WHERE chat_jid = ? AND timestamp >= ? ORDER BY timestamp, rowid", (chat_jid, cursor))
    return [_message(r) for r in rows]


def bot_messages(rm: ReadModel, chat_jid: str, assistant_name: str) -> list[StoredMessage]:
    """Bot messages of a chat (flag or ``<name>:`` prefix), for cursor recovery (v1 getOrRecoverCursor)."""
    rows = rm.query("SELECT * FROM messages WHERE chat_jid = ? AND (is_bot_message = 1 OR content LIKE ?)",
                    (chat_jid, f"{assistant_name}:%"))
    return [_message(r) for r in rows]


def _message(r: sqlite3.Row) -> StoredMessage:
    return StoredMessage(r["id"], r["chat_jid"], r["sender"], r["sender_name"], r["content"] or "", r["timestamp"],
                         bool(r["is_from_me"]), bool(r["is_bot_message"]), r["reply_to_message_id"],
                         r["reply_to_message_content"], r["reply_to_sender_name"])


def chat_channel(rm: ReadModel, chat_jid: str) -> str | None:
    rows = rm.query("SELECT channel FROM chats WHERE jid = ?", (chat_jid,))
    return rows[0]["channel"] if rows else None
