"""The WhatsApp channel: a neonize client wired to the inbound buffer, and a :class:`ChannelPort` for replies.

Connection rules (stack-notes §1.4): every handler is registered before ``connect()``; the first connect is
retried with backoff by us (neonize does not); a disconnect is only reported (whatsmeow reconnects by itself,
calling connect again would start a second client on the same session); states that need the user
(logged out, replaced, banned, not paired) become ``ChannelStatusChanged`` events and a log line saying what
to do, and the channel stops trying.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path

from events.catalogue.chat import ChannelStatusChanged
from events.catalogue.types import iso_utc
from services.gateway.buffer import BufferFull, InboundBuffer
from services.gateway.config import WhatsAppConfig
from services.gateway.ports import ChannelDown
from services.gateway.whatsapp.connection import (ConnectBlocked, ConnectionSignals, connect_with_retry, first_connect,
                                                  register_handlers, status_retrying)
from services.gateway.whatsapp.groups import group_sync_due, sync_group_names
from services.gateway.whatsapp.inbound import InboundContext, to_message_received
from services.gateway.whatsapp.lid import CachingLidResolver
from services.gateway.whatsapp.port import NeonizePort

log = logging.getLogger("nanoclaw.gateway.whatsapp")


class WhatsAppChannel:
    name = "whatsapp"

    def __init__(self, config: WhatsAppConfig, session_db: Path, buffer: InboundBuffer, assistant_name: str,
                 has_own_number: bool):
        self.config, self.session_db, self.buffer = config, session_db, buffer
        self.assistant_name, self.has_own_number = assistant_name, has_own_number
        self.signals = ConnectionSignals()
        self.port: NeonizePort | None = None
        self._lids = CachingLidResolver()

    @property
    def connected(self) -> bool:
        return self.port is not None and self.signals.connected.is_set()

    async def run(self) -> None:
        """Connect (retrying), then keep group names in sync until cancelled."""
        from neonize.aioze.client import NewAClient  # imported here: only an enabled channel loads the Go library

        self.session_db.parent.mkdir(parents=True, exist_ok=True)
        client = NewAClient(str(self.session_db))
        register_handlers(client, self._on_message, self._on_status, signals=self.signals, db_path=str(self.session_db))
        try:
            task = await connect_with_retry(lambda: first_connect(client, self.signals), on_retry=self._on_retry)
        except ConnectBlocked as exc:
            log.error("WhatsApp needs you: %s — %s", exc.status.detail, exc.status.action)
            return
        self.port = NeonizePort(client)
        try:
            await self._sync_groups_forever()
        finally:
            await client.stop()
            task.cancel()

    async def _sync_groups_forever(self) -> None:
        last: datetime | None = None
        while True:
            now = datetime.now(timezone.utc)
            if group_sync_due(last, now) and self.port is not None:
                try:
                    for named in await sync_group_names(self.port, now):
                        self.buffer.put(named.chat_jid, named, f"whatsapp-name:{named.chat_jid}:{named.name}:{now.date()}")
                    last = now
                except Exception as exc:  # noqa: BLE001 - a failed sync is retried at the next tick
                    log.warning("WhatsApp group sync failed: %s", exc)
            await asyncio.sleep(3600)

    async def _on_message(self, ev) -> None:
        ctx = InboundContext(self.assistant_name, self.has_own_number, lid_resolver=self._lids)
        payload = await to_message_received(ev, ctx)
        if payload is None:
            return
        try:
            self.buffer.put(f"{payload.chat_jid}/{payload.message_id}", payload, f"whatsapp:{payload.message_id}",
                            new_aggregate=True)
        except BufferFull as exc:
            log.error("WhatsApp message %s from %s NOT stored: %s", payload.message_id, payload.chat_jid, exc)

    async def _on_status(self, status: ChannelStatusChanged) -> None:
        if status.action:
            log.error("WhatsApp %s: %s — %s", status.status, status.detail, status.action)
        else:
            log.info("WhatsApp %s %s", status.status, status.detail)
        try:
            self.buffer.put("whatsapp", status, f"whatsapp-status:{uuid.uuid4().hex}")
        except BufferFull:
            log.error("WhatsApp status %s not recorded: inbound buffer full", status.status)

    async def _on_retry(self, failures: int, delay: float, error: BaseException) -> None:
        await self._on_status(status_retrying(failures, delay, error))

    async def send(self, chat_jid: str, text: str, request_id: str) -> tuple[str, str]:
        if not self.connected or self.port is None:
            raise ChannelDown("WhatsApp is not connected")
        message_id, sent_at_s = await self.port.send_text(chat_jid, text)
        return message_id, iso_utc(datetime.fromtimestamp(sent_at_s, timezone.utc))  # whatsmeow gives seconds

    async def set_typing(self, chat_jid: str, composing: bool) -> None:
        if self.connected and self.port is not None:
            await self.port.set_typing(chat_jid, composing)
