"""The chat's notice ledger (``router.notices/<chat JID>``): which failure notices the chat got and when, and which
of the agent's messages to it were not delivered and not yet told to the agent.

State changes only in the ``@event`` methods, so a reloaded ledger decides exactly as the one that wrote it.
Times are the causing events' times (ISO UTC strings), never the handler's clock: a redelivered failure decides
the same way however late it comes back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import event

from events.aggregate import NcAggregate

TEXT_KEPT = 300
"""Characters of an undelivered message kept for the agent's next prompt (enough to recognise it)."""


class ChatNotices(NcAggregate):
    CONTEXT, TYPE = "router", "notices"

    @staticmethod
    def create_id(chat_jid: str, **_: Any) -> str:
        return chat_jid

    @event("ChatNoticesOpened")
    def __init__(self, chat_jid: str):
        self.chat_jid = chat_jid
        self.last: dict[str, tuple[str, str]] = {}  # kind -> (at, cause event id) of the last notice sent
        self.undelivered: dict[str, dict[str, str]] = {}  # request id -> {reason, text, at}, not yet told
        self.noted: set[str] = set()  # request ids ever noted (a redelivered failure is noted once)

    # -- failure notices -----------------------------------------------------------------------------------

    def sent_for(self, kind: str, cause_event_id: str) -> bool:
        """True when the last notice of ``kind`` answered exactly this cause (a redelivery of it)."""
        last = self.last.get(kind)
        return last is not None and last[1] == cause_event_id

    def recent(self, kind: str, at: datetime, interval_s: float) -> bool:
        """True when a notice of ``kind`` was sent less than ``interval_s`` before ``at``."""
        last = self.last.get(kind)
        return last is not None and at - datetime.fromisoformat(last[0].replace("Z", "+00:00")) < timedelta(seconds=interval_s)

    @event("FailureNoticeRequested")
    def notice_requested(self, chat_jid: str, kind: str, cause_event_id: str, request_id: str, at: str) -> None:
        self.last[kind] = (at, cause_event_id)

    # -- undelivered replies -------------------------------------------------------------------------------

    def note_undelivered(self, request_id: str, reason: str, text: str, at: str) -> bool:
        """Remember an undelivered message for the agent's next turn. False if it was noted before."""
        if request_id in self.noted:
            return False
        self._undelivered(chat_jid=self.chat_jid, request_id=request_id, reason=reason[:TEXT_KEPT],
                          text=text[:TEXT_KEPT], at=at)
        return True

    @event("UndeliveredReplyNoted")
    def _undelivered(self, chat_jid: str, request_id: str, reason: str, text: str, at: str) -> None:
        self.undelivered[request_id] = {"reason": reason, "text": text, "at": at}
        self.noted.add(request_id)

    @event("UndeliveredRepliesTold")
    def told(self, chat_jid: str, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self.undelivered.pop(request_id, None)
