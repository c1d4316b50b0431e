"""Fixtures for the WhatsApp gateway tests: real neonize events through neonize's own dispatcher.

As stack-notes §1.6: build the proto2 event, fill its required fields, serialise it, and hand the bytes to
``client.event.execute`` from a worker thread, exactly as the Go callback does. Nothing here connects.
"""

from __future__ import annotations

import asyncio
import ctypes
from dataclasses import dataclass
from types import SimpleNamespace

import neonize.aioze.events as neonize_events
import pytest
from google.protobuf.message import Message as ProtoMessage
from neonize.aioze.client import NewAClient
from neonize.aioze.events import MessageEv
from neonize.events import EVENT_TO_INT
from neonize.proto.Neonize_pb2 import JID, MessageInfo, MessageSource
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

def fill_required(msg: ProtoMessage) -> ProtoMessage:
    """Set every unset proto2 ``required`` field (recursively) to its default, so the event serialises."""
    for f in msg.DESCRIPTOR.fields:
        if f.is_repeated:
            if f.message_type:
                for item in getattr(msg, f.name):
                    fill_required(item)
        elif f.message_type:
            if f.is_required or msg.HasField(f.name):
                fill_required(getattr(msg, f.name))
                if f.is_required and not msg.HasField(f.name):
                    getattr(msg, f.name).SetInParent()
        elif f.is_required and not msg.HasField(f.name):
            setattr(msg, f.name, f.default_value)
    return msg


def jid(value: str | None) -> JID:
    """``"user@server"`` or ``"user:device@server"`` → ``JID``; ``None`` → an empty JID."""
    if not value:
        return JID()
    user, _, server = value.rpartition("@")
    user, _, device = user.partition(":")
    return JID(User=user, Server=server, Device=int(device or 0))


def message_ev(text: str | None = None, *, body: Message | None = None, chat: str = "120363001@g.us",
               sender: str = "15551234567@s.whatsapp.net", sender_alt: str | None = None,
               recipient_alt: str | None = None, from_me: bool = False, msg_id: str = "3EB0ABCDEF",
               pushname: str = "Alice", timestamp_ms: int = 1_700_000_000_123) -> MessageEv:
    """A real ``MessageEv``. ``text`` → ``conversation``; ``body`` → any ``Message``; neither → no message."""
    if body is None and text is not None:
        body = Message(conversation=text)
    src = MessageSource(Chat=jid(chat), Sender=jid(sender), IsFromMe=from_me, IsGroup=chat.endswith("@g.us"),
                        SenderAlt=jid(sender_alt), RecipientAlt=jid(recipient_alt))
    ev = MessageEv(Info=MessageInfo(MessageSource=src, ID=msg_id, Pushname=pushname, Timestamp=timestamp_ms,
                                    Type="text"))
    if body is not None:
        ev.Message.CopyFrom(body)
    return fill_required(ev)


@dataclass
class NeonizeWire:
    """Drives a never-connected ``NewAClient`` the way the Go side does."""

    client: NewAClient

    async def feed(self, *events: ProtoMessage) -> None:
        """Dispatch events through ``client.event.execute`` (the real callback) from a worker thread."""
        for ev in events:
            data = fill_required(ev).SerializeToString()
            buf = ctypes.create_string_buffer(data, len(data))
            await asyncio.to_thread(self.client.event.execute, 0, ctypes.addressof(buf), len(data),
                                    EVENT_TO_INT[type(ev)])

    async def qr(self, code: bytes) -> None:
        """Deliver a QR code through neonize's own QR callback (``NewAClient.__onQr``)."""
        buf = ctypes.create_string_buffer(code)  # NUL-terminated: neonize reads it with string_at(ptr)
        await asyncio.to_thread(self.client._NewAClient__onQr, 0, ctypes.addressof(buf))

    async def translate(self, ev: MessageEv, ctx):
        """Dispatch ``ev`` and return what ``to_message_received`` makes of the event the handler got."""
        from services.gateway.whatsapp.inbound import to_message_received

        got: asyncio.Queue = asyncio.Queue()

        async def on_message(_client, received: MessageEv) -> None:
            got.put_nowait(await to_message_received(received, ctx))

        self.client.event(MessageEv)(on_message)
        await self.feed(ev)
        return await asyncio.wait_for(got.get(), 5)


@pytest.fixture
async def wire(tmp_path, monkeypatch) -> NeonizeWire:
    # neonize dispatches onto a module-global loop that connect() sets once per process; every test has its
    # own loop (asyncio_default_fixture_loop_scope=function), so point it at this test's loop.
    monkeypatch.setattr(neonize_events, "event_global_loop", asyncio.get_running_loop())
    return NeonizeWire(NewAClient(str(tmp_path / "whatsapp-session.sqlite3")))


@pytest.fixture
def build() -> SimpleNamespace:
    """The event builders: ``build.message(...)`` (a real ``MessageEv``), ``build.jid("user@server")``."""
    return SimpleNamespace(message=message_ev, jid=jid)
