"""Failures reach people, not only logs (issue 13): one short, rate-limited notice in the chat that sent the message.

| Failure event (owner) | Notice kind | Chat |
|---|---|---|
| ``RunAbandoned`` (queue) | ``run_abandoned`` | ``chat_jid`` |
| ``ModelCredentialFailed`` (broker), ``problem`` missing / rejected | ``credential_missing`` / ``credential_rejected`` | the run's group |
| ``ModelRequestRefused`` (broker: the group's budget is spent) | ``budget_refused`` | the run's group |
| ``MessageDeadLettered`` of a ``MessageReceived`` (any service) | ``message_dead_lettered`` | the message's chat |

Each notice is an ``OutboundMessageRequested`` (request id ``notice:<cause event id>``) recorded on the chat's
ledger (:class:`~services.router.notice_ledger.ChatNotices`, ``FailureNoticeRequested``) first. Rules:

- only registered groups get notices (the router never writes to chats it does not serve);
- at most one notice per kind per chat within ``router.failure_notice_interval_s`` (default 600 s), measured
  between the failure events' own times, so a redelivery decides the same way;
- an abandoned run gets no notice of its own when a credential or budget notice went to the chat within the
  interval: that notice already said why (the abandonment follows it in the log);
- the texts are fixed sentences with at most a number in them: never an error message, a secret or a stack trace.

The handlers are pure (event, read model, ledger) → emits, like every router handler. A redelivered failure finds
its own cause on the ledger and emits the same request again, which the store keeps once (same message id).
"""

from __future__ import annotations

from events.catalogue.broker import ModelCredentialFailed, ModelRequestRefused
from events.catalogue.chat import OutboundMessageRequested, channel_of
from events.catalogue.queue import RunAbandoned
from events.catalogue.system import MessageDeadLettered
from events.catalogue.types import iso_utc
from events.subjects import EVENT_PREFIX, decode_token
from services.harness.service import Delivery, Emit
from services.router import queries
from services.router.notice_ledger import ChatNotices

TEXTS = {
    "run_abandoned": "Sorry, I could not answer your last message: the agent failed {attempts} times in a row. "
                     "I will try again when you send a new message.",
    "credential_missing": "I cannot answer right now: no Claude credential is configured. "
                          "The owner needs to add one to credentials.yml.",
    "credential_rejected": "I cannot answer right now: the Claude credential was rejected (HTTP {status}). "
                           "The owner needs to renew it in credentials.yml.",
    "budget_refused": "I cannot answer right now: this group's model budget is used up.",
    "message_dead_lettered": "Sorry, one of your messages could not be processed and was set aside. "
                             "Please send it again.",
}
EXPLAINS_ABANDONMENT = ("credential_missing", "credential_rejected", "budget_refused")


async def on_run_abandoned(d: Delivery, deps) -> list[Emit]:
    ab: RunAbandoned = d.payload  # type: ignore[assignment]
    return await notify(d, deps, ab.chat_jid, "run_abandoned", TEXTS["run_abandoned"].format(attempts=ab.attempts),
                        unless_recent=EXPLAINS_ABANDONMENT)


async def on_credential_failed(d: Delivery, deps) -> list[Emit]:
    failed: ModelCredentialFailed = d.payload  # type: ignore[assignment]
    group = queries.group_by_folder(deps.readmodel, failed.group_folder)
    if group is None:
        return []
    kind = f"credential_{failed.problem}"
    return await notify(d, deps, group.jid, kind, TEXTS[kind].format(status=failed.status))


async def on_budget_refused(d: Delivery, deps) -> list[Emit]:
    refused: ModelRequestRefused = d.payload  # type: ignore[assignment]
    group = queries.group_by_folder(deps.readmodel, refused.group_folder)
    return [] if group is None else await notify(d, deps, group.jid, "budget_refused", TEXTS["budget_refused"])


async def on_dead_lettered(d: Delivery, deps) -> list[Emit]:
    dead: MessageDeadLettered = d.payload  # type: ignore[assignment]
    chat_jid = inbound_chat(dead.subject)
    if chat_jid is None:
        return []  # not a chat message (a queue or agent event): nobody in a chat is waiting on it
    return await notify(d, deps, chat_jid, "message_dead_lettered", TEXTS["message_dead_lettered"])


def inbound_chat(subject: str) -> str | None:
    """The chat JID of a dead-lettered inbound message's subject, ``nc.evt.chat.message.<chat>/<id>.<type>``
    (events/subjects.py), else None."""
    prefix = f"{EVENT_PREFIX}.chat.message."
    if not subject.startswith(prefix):
        return None
    token = subject[len(prefix):].split(".")[0]
    try:
        chat_jid = decode_token(token).partition("/")[0]
    except (UnicodeDecodeError, ValueError):
        return None
    return chat_jid or None


async def notify(d: Delivery, deps, chat_jid: str, kind: str, text: str, *,
                 unless_recent: tuple[str, ...] = ()) -> list[Emit]:
    """The emits telling ``chat_jid`` about the failure ``d`` (none when rate-limited or not a registered group)."""
    group = queries.group(deps.readmodel, chat_jid)
    if group is None:
        return []
    ledger = await deps.repository.get(ChatNotices, chat_jid) or ChatNotices(chat_jid=chat_jid)
    request_id = f"notice:{d.event.id}"
    if not ledger.sent_for(kind, d.event.id):
        interval = deps.config.failure_notice_interval_s
        if any(ledger.recent(k, d.event.time, interval) for k in (kind, *unless_recent)):
            return []
        ledger.notice_requested(chat_jid=chat_jid, kind=kind, cause_event_id=d.event.id, request_id=request_id,
                                at=iso_utc(d.event.time))
    channel = queries.chat_channel(deps.readmodel, chat_jid) or channel_of(chat_jid)
    request = OutboundMessageRequested(channel=channel, chat_jid=chat_jid, text=text,  # type: ignore[arg-type]
                                       group_folder=group.folder)
    recorded = Emit.of(ledger)
    return [*([recorded] if recorded else []), Emit.new(request_id, request, msg_id=request_id)]


HANDLERS = {
    "RunAbandoned": on_run_abandoned,
    "ModelCredentialFailed": on_credential_failed,
    "ModelRequestRefused": on_budget_refused,
    "MessageDeadLettered": on_dead_lettered,
}
