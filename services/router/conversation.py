"""The conversation aggregate (one per chat): the agent cursor, moved only by events.

The cursor is the timestamp of the last message handed to an agent (v1 ``lastAgentTimestamp``) plus the ids of
the messages at that timestamp already handed over (``cursor_ids``: many messages share a timestamp, and a batch
may end among them). It only moves forward, past the messages of each requested turn: from there the queue owns
the turn (it runs it, pipes it, retries it or returns it to the front of the chat's queue; docs/agent-runs.md,
"Run lifecycle"). ``AgentInputAppended`` and ``AgentCursorRolledBack`` are no longer recorded; they stay here so
older logs replay. Optimistic concurrency on
this aggregate is what stops two routers (or a redelivery) from handing the same messages to two runs.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import event

from events.aggregate import NcAggregate


class Conversation(NcAggregate):
    CONTEXT, TYPE = "router", "conversation"

    @staticmethod
    def create_id(chat_jid: str, **_: Any) -> str:
        return chat_jid

    @event("ConversationStarted")
    def __init__(self, chat_jid: str, cursor: str = ""):
        self.chat_jid = chat_jid
        self.cursor = cursor
        self.cursor_ids: list[str] | None = None  # None: everything at ``cursor`` was handed over (v1 rule)
        self.turns = 0  # turns requested so far: the next turn's ``seq`` is turns + 1

    @property
    def next_seq(self) -> int:
        """The ordinal of the next turn of this chat (1-based; older logs' turns count too)."""
        return self.turns + 1

    @event("AgentTurnRequested")
    def request_turn(self, turn_id: str, chat_jid: str, group_folder: str, is_main: bool, channel: str, prompt: str,
                     message_ids: list[str], previous_cursor: str, cursor: str, omitted: int = 0,
                     session_id: str | None = None, cursor_ids: list[str] | None = None,
                     batch_limit: int | None = None, seq: int | None = None) -> None:
        self.cursor = cursor
        self.cursor_ids = cursor_ids
        self.turns = seq if seq is not None else self.turns + 1

    @event("AgentInputAppended")
    def append_input(self, run_id: str, chat_jid: str, group_folder: str, prompt: str, message_ids: list[str],
                     previous_cursor: str, cursor: str) -> None:
        self.cursor = cursor  # legacy (older logs): follow-ups the router piped itself
        self.cursor_ids = None

    @event("AgentCursorRolledBack")
    def _rolled_back(self, chat_jid: str, run_id: str, turn_id: str, cursor: str, reason: str) -> None:
        self.cursor = cursor  # legacy (older logs): the queue now retries the failed run's turns instead
        self.cursor_ids = None
