"""Router events: registered groups and the per-chat agent cursor (issue: the chat path)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from events.catalogue.base import EventPayload
from events.catalogue.types import UtcTimestamp

FOLDER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""Group folder names (as NanoClaw v1 group-folder.ts); ``global`` is reserved and refused separately."""


class _GroupSettings(EventPayload):
    """The full settings of a registered group (shared by ``GroupRegistered`` and ``GroupReinstated``)."""

    context = "router"
    aggregate = "group"

    jid: str
    name: str
    folder: str = Field(pattern=FOLDER_PATTERN)
    trigger: str
    requires_trigger: bool = True
    is_main: bool = False
    channel: str = "whatsapp"
    container_config: dict[str, Any] | None = None
    added_at: UtcTimestamp


class GroupRegistered(_GroupSettings):
    """A chat became a registered group. Aggregate id: the chat JID."""


class GroupUpdated(EventPayload):
    """Some settings of a registered group changed; absent fields are unchanged. Aggregate id: the chat JID."""

    context = "router"
    aggregate = "group"

    jid: str
    name: str | None = None
    trigger: str | None = None
    requires_trigger: bool | None = None
    container_config: dict[str, Any] | None = None


class GroupReinstated(_GroupSettings):
    """A removed group was registered again, with these settings. Aggregate id: the chat JID."""


class GroupRemoved(EventPayload):
    """A group was unregistered (its messages and folder are kept). Aggregate id: the chat JID."""

    context = "router"
    aggregate = "group"

    jid: str


class ConversationStarted(EventPayload):
    """The router's first decision for a chat (committed together with that decision). Aggregate id: the chat
    JID. ``cursor`` is the recovered agent cursor (v1: the newest bot message, else empty)."""

    context = "router"
    aggregate = "conversation"

    chat_jid: str
    cursor: str = ""


class AgentTurnRequested(EventPayload):
    """The router hands a batch of pending messages to the agent: ``prompt`` is NanoClaw's XML prompt over
    ``message_ids`` (oldest first, at most ``router.max_messages_per_prompt``; more pending messages become the
    next turns of the same commit, never a cut). Advances the group's agent cursor to ``cursor`` (the newest
    given timestamp) and ``cursor_ids`` (the ids at that timestamp handed over so far; None in older logs:
    everything at ``cursor``). The queue then owns the turn: it starts a run with it or pipes it into the
    group's run. Aggregate id: the chat JID (the conversation). ``omitted``: older logs only (the cut that
    announced dropped messages; always 0 now). ``batch_limit``: the cap the router used, so the queue joins
    queued turns into one prompt only within it (None in older logs: no limit). ``seq``: the turn's ordinal in
    its chat (1, 2, 3 …, counted by the conversation aggregate over every turn it ever requested; None in older
    logs), so the queue can tell a turn that arrives ahead of an earlier one (a redelivery after a crash) and
    wait for the earlier one."""

    context = "router"
    aggregate = "conversation"

    turn_id: str
    chat_jid: str
    group_folder: str
    is_main: bool = False
    channel: str
    prompt: str
    message_ids: list[str]
    previous_cursor: str
    cursor: str
    omitted: int = 0
    session_id: str | None = None
    cursor_ids: list[str] | None = None
    batch_limit: int | None = None
    seq: int | None = None


class AgentInputAppended(EventPayload):
    """Legacy (older logs; no longer recorded): follow-up messages the router piped into an active run itself.
    Turns now always go through the queue (``AgentTurnRequested`` → ``RunInputPiped``). Aggregate id: the chat
    JID."""

    context = "router"
    aggregate = "conversation"

    run_id: str
    chat_jid: str
    group_folder: str
    prompt: str
    message_ids: list[str]
    previous_cursor: str
    cursor: str


class AgentCursorRolledBack(EventPayload):
    """Legacy (older logs; no longer recorded): a failed run moved the cursor back so its messages were read
    again. The queue now keeps a failed run's turns and retries them itself (``RunRetryScheduled``), so the
    cursor only moves forward. Aggregate id: the chat JID."""

    context = "router"
    aggregate = "conversation"

    chat_jid: str
    run_id: str
    turn_id: str
    cursor: str
    reason: str


NoticeKind = Literal["run_abandoned", "credential_missing", "credential_rejected", "budget_refused",
                     "message_dead_lettered"]
"""What went wrong, for the chat notices of services/router/notices.py (each kind is rate-limited separately)."""


class ChatNoticesOpened(EventPayload):
    """The first event of a chat's notice ledger (committed with its first decision). Aggregate id: the chat JID
    (``router.notices/<chat>``)."""

    context = "router"
    aggregate = "notices"

    chat_jid: str


class FailureNoticeRequested(EventPayload):
    """The router told the chat about a failure: ``request_id`` is the ``OutboundMessageRequested`` carrying the
    short notice, ``cause_event_id`` the failure event (``RunAbandoned``, ``ModelCredentialFailed``,
    ``ModelRequestRefused``, ``MessageDeadLettered``). ``at`` is the cause's time: a later failure of the same
    ``kind`` within ``router.failure_notice_interval_s`` of it gets no notice. Aggregate id: the chat JID."""

    context = "router"
    aggregate = "notices"

    chat_jid: str
    kind: NoticeKind
    cause_event_id: str
    request_id: str
    at: UtcTimestamp


class UndeliveredReplyNoted(EventPayload):
    """A message the agent wrote to the chat could not be delivered (``MessageDeliveryFailed`` of request
    ``request_id``): the agent is told at its next turn (NanoClaw issue #2423). ``text`` is the start of the
    undelivered message, ``reason`` the channel's. Aggregate id: the chat JID."""

    context = "router"
    aggregate = "notices"

    chat_jid: str
    request_id: str
    reason: str
    text: str
    at: UtcTimestamp


class UndeliveredRepliesTold(EventPayload):
    """The undelivered messages ``request_ids`` were named in the prompt of the chat's next turn (or follow-up),
    so they are not named again. Aggregate id: the chat JID."""

    context = "router"
    aggregate = "notices"

    chat_jid: str
    request_ids: list[str]
