"""Which stored messages the router looks at, hands to the agent, and lets start a run.

Pure versions of NanoClaw v1's ``db.ts`` queries (``getNewMessages``, ``getMessagesSince``,
``getLastBotMessageTimestamp``) and of the trigger gate in ``index.ts`` (§5, §6.1, §7). Inputs are whatever
rows the caller has; nothing here does I/O. Cursors and timestamps are ISO-8601 UTC strings compared as
strings (§5), ``""`` meaning "from the beginning".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

from services.router.model import Group, StoredMessage
from services.router.trigger import group_trigger, matches_trigger, needs_trigger

MAX_MESSAGES_PER_PROMPT = 10
"""NanoClaw's prompt window (``MAX_MESSAGES_PER_PROMPT``)."""
NEW_MESSAGES_LIMIT = 200
"""NanoClaw's cap on one message-loop poll (``getNewMessages``)."""

SenderAllowed = Callable[[str, str], bool]
"""``(chat_jid, sender) -> bool``: may this sender trigger the agent in this chat (the sender allowlist)."""


def is_bot_message(message: StoredMessage, assistant_name: str) -> bool:
    """True for the assistant's own messages: the flag, or content starting with ``"<assistant_name>:"``.

    The content prefix is NanoClaw's backstop for rows stored before the flag existed, and the only signal on
    a shared number (§4, quirk §23.14). It is case-sensitive; NanoClaw's SQL ``LIKE 'Andy:%'`` is
    ASCII-case-insensitive (it would also hide a human's ``"andy: …"``), which we do not copy.
    """
    return bool(message.is_bot_message) or (message.content or "").startswith(f"{assistant_name}:")


def _eligible(messages: Iterable[StoredMessage], cursor: str, assistant_name: str) -> list[StoredMessage]:
    # Same filter as NanoClaw's SQL: after the cursor, not from the bot, non-empty content (whitespace-only
    # content is kept, as SQL `content != ''` keeps it). Sorting is stable, so rows sharing a timestamp
    # keep the caller's order.
    picked = [
        m
        for m in messages
        if m.timestamp > cursor and m.content and not is_bot_message(m, assistant_name)
    ]
    picked.sort(key=lambda m: m.timestamp)
    return picked


def _check_limit(limit: int) -> None:
    # SQLite treats a negative LIMIT as "no limit" and 0 as "nothing"; neither is a sensible request here.
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")


def pending_messages(
    messages: Iterable[StoredMessage],
    cursor: str,
    assistant_name: str,
    limit: int = MAX_MESSAGES_PER_PROMPT,
) -> tuple[list[StoredMessage], int]:
    """NanoClaw v1 ``getMessagesSince``: the **most recent** ``limit`` pending messages, the rest cut (quirk
    §23.2). Kept as the reference of v1's rule; the router does not use it any more: it hands over every
    pending message (:func:`unseen_messages`, :func:`batches`; issue 13).

    Args:
        messages: that chat's stored messages, in any order (pass one chat's rows only).
        cursor: the group's agent cursor; only messages with ``timestamp > cursor`` count.
        assistant_name: for the ``"<name>:"`` bot-message backstop (:func:`is_bot_message`).
        limit: keep at most this many, the **most recent** ones.

    Returns:
        ``(selected, omitted)``: ``selected`` oldest first; ``omitted`` is how many older eligible
        messages the limit cut off (NanoClaw drops them silently, quirk §23.2).

    Raises:
        ValueError: ``limit < 1``.
    """
    _check_limit(limit)
    eligible = _eligible(messages, cursor, assistant_name)
    selected = eligible[-limit:]
    return selected, len(eligible) - len(selected)


def unseen_messages(
    messages: Iterable[StoredMessage],
    cursor: str,
    cursor_ids: Collection[str] | None,
    assistant_name: str,
) -> list[StoredMessage]:
    """Every eligible message the model has not been given yet, oldest first (issue 13: no silent cut).

    Args:
        messages: that chat's stored messages with ``timestamp >= cursor``, in arrival order.
        cursor: the timestamp of the newest message handed to a turn.
        cursor_ids: ids of the messages *at* ``cursor`` already handed over. ``None`` (cursors recorded before
            this field existed, or recovered ones) means every message at ``cursor`` was handed over, as v1's
            strict ``timestamp > cursor``. Needed because many messages share one timestamp (WhatsApp gives
            seconds), and a batch may end in the middle of them.

    Same filter as :func:`pending_messages` (bots and empty content left out), but nothing is cut: the caller
    splits the result into batches (:func:`batches`).
    """
    done = set(cursor_ids or ())
    picked = [m for m in messages
              if (m.timestamp > cursor or (cursor_ids is not None and m.timestamp == cursor and m.id not in done))
              and m.content and not is_bot_message(m, assistant_name)]
    picked.sort(key=lambda m: m.timestamp)  # stable: same-timestamp rows keep arrival order
    return picked


def batches(messages: Sequence[StoredMessage], limit: int) -> list[list[StoredMessage]]:
    """``messages`` (oldest first) in consecutive batches of at most ``limit``: one turn each, in order.

    Raises:
        ValueError: ``limit < 1``.
    """
    _check_limit(limit)
    return [list(messages[i:i + limit]) for i in range(0, len(messages), limit)]


def advance_cursor(cursor: str, cursor_ids: Collection[str] | None,
                   given: Sequence[StoredMessage]) -> tuple[str, list[str]]:
    """The cursor after handing ``given`` (oldest first, non-empty) to a turn: the newest given timestamp, and
    the ids of the messages at that timestamp handed over so far (this batch's, plus earlier ones at the same
    timestamp)."""
    new = given[-1].timestamp
    ids = [m.id for m in given if m.timestamp == new]
    if new == cursor and cursor_ids:
        ids = list(cursor_ids) + [i for i in ids if i not in set(cursor_ids)]
    return new, ids


def new_messages(
    messages: Iterable[StoredMessage],
    chat_jids: Collection[str],
    cursor: str,
    assistant_name: str,
    limit: int = NEW_MESSAGES_LIMIT,
) -> tuple[list[StoredMessage], str]:
    """One message-loop poll across registered chats, as NanoClaw v1 ``getNewMessages`` (§6.1 step 1).

    Same filter as :func:`pending_messages`, restricted to ``chat_jids``; keeps the most recent ``limit``.

    Returns:
        ``(selected, new_cursor)``: ``selected`` oldest first; ``new_cursor`` is the newest selected
        timestamp, or ``cursor`` unchanged when nothing was selected (e.g. ``chat_jids`` is empty).

    Raises:
        ValueError: ``limit < 1``.
    """
    _check_limit(limit)
    if not chat_jids:
        return [], cursor
    jids = set(chat_jids)
    eligible = _eligible((m for m in messages if m.chat_jid in jids), cursor, assistant_name)
    selected = eligible[-limit:]
    return selected, max((m.timestamp for m in selected), default=cursor)


def recover_cursor(messages: Iterable[StoredMessage], assistant_name: str) -> str:
    """Rebuild a lost agent cursor, as NanoClaw v1 ``getOrRecoverCursor`` (§5).

    Args:
        messages: that chat's stored messages (pass one chat's rows only).
        assistant_name: for the ``"<name>:"`` backstop.

    Returns:
        The newest timestamp among the bot's own messages (flag or prefix), or ``""`` if it never spoke,
        so everything still pending is picked up again.
    """
    return max((m.timestamp for m in messages if is_bot_message(m, assistant_name)), default="")


def should_trigger(
    group: Group,
    new_messages: Sequence[StoredMessage],
    assistant_name: str,
    sender_allowed: SenderAllowed,
) -> bool:
    """The trigger gate for a batch of new messages in ``group`` (NanoClaw v1 §6.1 step 3, §7 step 2).

    * An empty batch never triggers (there is nothing to answer).
    * A group that does not need a trigger (main, or ``requires_trigger`` false) is triggered by any message.
    * Otherwise some message must start with the group's trigger (:func:`~services.router.trigger.group_trigger`,
      which replaces the default) **and** be ``is_from_me`` or from a sender that ``sender_allowed(chat_jid,
      sender)`` accepts.

    Bot messages never trigger. Callers pass batches already filtered by :func:`pending_messages`, so this
    only matters for raw input, where it stops the bot answering its own echo.
    """
    candidates = [m for m in new_messages if not is_bot_message(m, assistant_name)]
    if not candidates:
        return False
    if not needs_trigger(group):
        return True
    trigger = group_trigger(group, assistant_name)
    return any(
        matches_trigger(m.content, trigger) and (m.is_from_me or sender_allowed(m.chat_jid, m.sender))
        for m in candidates
    )
