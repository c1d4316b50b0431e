"""The channel gateway service: inbound buffer → events; outbound requests → channels → receipts."""

from __future__ import annotations

import asyncio

from services.gateway.buffer import InboundBuffer
from services.gateway.config import GatewayConfig
from services.gateway.http_channel import HttpChannel
from services.gateway.outbound import OutboundDeps, on_outbound_requested, on_run_finished, on_run_started
from services.gateway.outbound_policy import ChatRateLimiter
from services.gateway.ports import ChannelPort
from services.gateway.registrations import Registrations
from services.gateway.whatsapp_channel import WhatsAppChannel
from services.harness.context import ServiceContext
from services.harness.service import Service


def build(ctx: ServiceContext) -> Service:
    """Raises: pydantic.ValidationError for an invalid ``channels:`` section; WebhookError for an exposed
    webhook without a token."""
    config = GatewayConfig.model_validate(ctx.settings.channels)
    state = ctx.data_dir / "gateway"
    buffer = InboundBuffer(state / "inbound.db", max_rows=config.inbound_buffer_max)
    registrations = Registrations(state / "readmodel.db", ctx.store)
    channels: dict[str, ChannelPort] = {}
    limiters: dict[str, ChatRateLimiter] = {}
    tasks = [lambda _deps: buffer.drain_forever(ctx.store)]
    if config.http.enabled:
        token = ctx.credentials.webhook_token.get_secret_value() if ctx.credentials.webhook_token else None
        http = HttpChannel(config.http, buffer, state / "http.db", token, registrations.is_registered)
        channels["http"] = http
        tasks.append(lambda _deps: _serve(http))
    if config.whatsapp.enabled:
        session = config.whatsapp.session_db or ctx.data_dir / "whatsapp" / "session.sqlite3"
        wa = WhatsAppChannel(config.whatsapp, session, buffer, ctx.settings.assistant_name,
                             ctx.settings.assistant_has_own_number)
        channels["whatsapp"] = wa
        limiters["whatsapp"] = ChatRateLimiter(config.whatsapp.messages_per_minute, config.whatsapp.burst)
        tasks.append(lambda _deps: wa.run())
    deps = OutboundDeps(ctx.store, channels, ctx.settings.assistant_name, ctx.settings.assistant_has_own_number, limiters)
    return Service(
        "gateway",
        handlers={"OutboundMessageRequested": on_outbound_requested, "AgentRunStarted": on_run_started,
                  "AgentRunFinished": on_run_finished},
        deps=deps,
        tasks=tasks,
        readmodel=registrations.readmodel,  # which chats are registered (the webhook refuses others)
        max_deliver=-1,  # a channel down for hours must not dead-letter replies (RetryLater never counts)
    )


async def _serve(http: HttpChannel) -> None:
    await http.serve()
    try:
        await asyncio.Event().wait()
    finally:
        await http.close()
