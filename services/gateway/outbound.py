"""Outbound delivery: ``OutboundMessageRequested`` → the channel → ``MessageSent`` or ``MessageDeliveryFailed``.

Every request gets a receipt. While a channel is down the request stays unacknowledged in the stream and is
redelivered with backoff (:class:`RetryLater`), so a gateway restart loses nothing. Requests are handled one
at a time in stream order, which keeps order per chat. A per-chat rate limit keeps a reply loop from getting
the WhatsApp number banned.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from events.catalogue.chat import MessageDeliveryFailed, MessageSent, OutboundMessageRequested
from events.catalogue.types import iso_utc
from events.envelope import AggregateRef, utcnow
from events.store.port import EventStore
from services.gateway.outbound_policy import ChatRateLimiter, reply_text, send_retry_delay
from services.gateway.ports import ChannelDown, ChannelPort
from services.harness.service import Delivery, Emit, RetryLater

MAX_SEND_ATTEMPTS = 5
"""Attempts while the channel is connected but the send fails, before ``MessageDeliveryFailed``."""
INLINE_WAIT_S = 5.0
"""Rate-limit waits up to this long happen in place (keeping order); longer ones are redelivered later."""


@dataclass
class OutboundDeps:
    store: EventStore
    channels: dict[str, ChannelPort]
    assistant_name: str
    has_own_number: bool
    limiters: dict[str, ChatRateLimiter] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)


async def on_outbound_requested(d: Delivery, deps: OutboundDeps) -> list[Emit]:
    req: OutboundMessageRequested = d.payload  # type: ignore[assignment]
    port = deps.channels.get(req.channel)
    if port is None:
        return []  # delivered by another process (the terminal channel lives in `nanoclaw chat`)
    request_id = d.event.aggregateid
    head = await deps.store.head(AggregateRef.for_payload(req, request_id))
    if head.version > d.event.aggregateversion:
        return []  # already has its receipt: a redelivery after a crash between send and ack
    if not port.connected:
        raise RetryLater(f"{req.channel} is not connected", send_retry_delay(min(d.deliveries, 10)))
    limiter = deps.limiters.get(req.channel)
    if limiter is not None:
        wait = limiter.delay(req.chat_jid)
        if wait > INLINE_WAIT_S:
            raise RetryLater(f"rate limit for {req.chat_jid}", wait)
        await asyncio.sleep(wait)
        limiter.reserve(req.chat_jid)
    text = reply_text(req.text, deps.assistant_name, deps.has_own_number) if req.channel == "whatsapp" else req.text
    try:
        message_id, sent_at = await port.send(req.chat_jid, sendable(text), request_id)
    except ChannelDown as exc:
        raise RetryLater(str(exc), send_retry_delay(min(d.deliveries, 10))) from exc
    except Exception as exc:  # noqa: BLE001 - a channel error is this attempt's failure, reported in the receipt
        attempts = deps.failures[request_id] = deps.failures.get(request_id, 0) + 1
        # A chat id no channel can encode will not become one by waiting: fail at once.
        if attempts < MAX_SEND_ATTEMPTS and not isinstance(exc, UnicodeError):
            raise RetryLater(f"send failed ({exc})", send_retry_delay(attempts)) from exc
        deps.failures.pop(request_id, None)
        failed = MessageDeliveryFailed(channel=req.channel, chat_jid=req.chat_jid, reason=f"{type(exc).__name__}: {exc}",
                                       attempts=attempts, at=iso_utc(utcnow()))
        return [Emit.append(request_id, failed)]
    sent = MessageSent(channel=req.channel, chat_jid=req.chat_jid, channel_message_id=message_id, sent_at=sent_at,
                       attempts=deps.failures.pop(request_id, 0) + 1)
    return [Emit.append(request_id, sent)]


def sendable(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD. JSON's ``\\u`` escapes can carry one (an agent's
    output, a forged event), but it is no Unicode character: no channel can encode it, and the reply is still
    worth delivering."""
    return _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


async def on_run_started(d: Delivery, deps: OutboundDeps) -> list[Emit]:
    """Typing indicator on while a run is active for the chat."""
    await _typing(deps, d.payload.chat_jid, True)  # type: ignore[attr-defined]
    return []


async def on_run_finished(d: Delivery, deps: OutboundDeps) -> list[Emit]:
    await _typing(deps, d.payload.chat_jid, False)  # type: ignore[attr-defined]
    return []


async def _typing(deps: OutboundDeps, chat_jid: str, composing: bool) -> None:
    for port in deps.channels.values():
        if chat_jid.startswith("http:") != (port.name == "http"):
            continue
        try:
            await port.set_typing(chat_jid, composing)
        except Exception:  # noqa: BLE001 - typing is cosmetic; never fail or retry a run event for it
            pass
