"""The conversation aggregate (one per chat): the agent cursor, moved only by events.

The cursor is the timestamp of the last message handed to an agent (v1 ``lastAgentTimestamp``). It advances
when a turn is requested or input is appended to a running agent, and goes back when a run fails before any
output reached the user, so those messages are retried (v1 processGroupMessages). Optimistic concurrency on
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
        self.turn_cursors: dict[str, str] = {}  # turn id -> cursor before it (for roll-back)
        self.rolled_back: set[str] = set()

    @event("AgentTurnRequested")
    def request_turn(self, turn_id: str, chat_jid: str, group_folder: str, is_main: bool, channel: str, prompt: str,
                     message_ids: list[str], previous_cursor: str, cursor: str, omitted: int = 0,
                     session_id: str | None = None) -> None:
        self.turn_cursors[turn_id] = previous_cursor
        self.cursor = cursor

    @event("AgentInputAppended")
    def append_input(self, run_id: str, chat_jid: str, group_folder: str, prompt: str, message_ids: list[str],
                     previous_cursor: str, cursor: str) -> None:
        self.cursor = cursor

    def roll_back(self, run_id: str, turn_id: str | None, reason: str) -> bool:
        """Move the cursor back to before ``turn_id``. Returns False when there is nothing to roll back
        (unknown turn, or already rolled back: a redelivered failure must not roll back twice)."""
        if turn_id is None or turn_id not in self.turn_cursors or turn_id in self.rolled_back:
            return False
        self._rolled_back(chat_jid=self.chat_jid, run_id=run_id, turn_id=turn_id, cursor=self.turn_cursors[turn_id],
                          reason=reason)
        return True

    @event("AgentCursorRolledBack")
    def _rolled_back(self, chat_jid: str, run_id: str, turn_id: str, cursor: str, reason: str) -> None:
        self.cursor = cursor
        self.rolled_back.add(turn_id)  # state changes live in event methods: a reloaded aggregate remembers
