"""NeonizePort: the outbound calls, checked against neonize's own types without a WhatsApp connection."""

from __future__ import annotations

import asyncio

import pytest
from neonize.proto.Neonize_pb2 import JID, GroupInfo, GroupName, SendResponse
from neonize.utils.enum import ChatPresence, ChatPresenceMedia

from services.gateway.whatsapp.port import NeonizePort, WhatsAppNotConnected, WhatsAppPort


@pytest.fixture
async def started(wire):
    """A real NewAClient that looks running (a pending connect task); tests replace its Go calls."""
    wire.client.connect_task = asyncio.get_running_loop().create_future()
    wire.client.calls = []
    return wire.client


def test_neonize_port_constructs_offline_and_satisfies_the_port(wire):
    port: WhatsAppPort = NeonizePort(wire.client)
    assert isinstance(port, NeonizePort)


@pytest.mark.parametrize("call", [
    lambda p: p.send_text("1@s.whatsapp.net", "hi"),
    lambda p: p.set_typing("1@s.whatsapp.net", True),
    lambda p: p.joined_groups(),
])
async def test_calls_before_the_first_connect_raise_instead_of_reaching_a_nil_go_client(wire, call):
    with pytest.raises(WhatsAppNotConnected):
        await call(NeonizePort(wire.client))


async def test_lid_lookup_before_the_first_connect_is_unknown(wire):
    assert await NeonizePort(wire.client).pn_from_lid("9876543210@lid") is None


async def test_calls_after_the_client_stopped_are_refused_too(started):
    started.connect_task.set_result(None)  # Stop() removed the Go client and Neonize() returned
    port = NeonizePort(started)
    with pytest.raises(WhatsAppNotConnected):
        await port.send_text("1@s.whatsapp.net", "hi")
    assert await port.pn_from_lid("9876543210@lid") is None


async def test_send_text_sends_a_plain_conversation_and_returns_id_and_seconds(started):
    async def send_message(to, message, **kwargs):
        started.calls.append((to, message, kwargs))
        return SendResponse(ID="3EB0SENT", Timestamp=1_700_000_000)

    started.send_message = send_message
    # a str would be regex-parsed by neonize into mentions; the port must send the text untouched
    msg_id, sent_at = await NeonizePort(started).send_text("120363001@g.us", "Andy: ping @4915123456789")
    (to, message, kwargs), = started.calls
    assert (to.User, to.Server, to.Device) == ("120363001", "g.us", 0)
    assert message.conversation == "Andy: ping @4915123456789"
    assert not message.HasField("extendedTextMessage")
    assert (msg_id, sent_at) == ("3EB0SENT", 1_700_000_000)


@pytest.mark.parametrize("composing, state", [(True, ChatPresence.CHAT_PRESENCE_COMPOSING),
                                              (False, ChatPresence.CHAT_PRESENCE_PAUSED)])
async def test_typing_maps_to_composing_and_paused_text_presence(started, composing, state):
    async def send_chat_presence(jid, st, media):
        started.calls.append((jid.User, st, media))

    started.send_chat_presence = send_chat_presence
    await NeonizePort(started).set_typing("15551234567@s.whatsapp.net", composing)
    assert started.calls == [("15551234567", state, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT)]


async def test_joined_groups_returns_jid_strings_and_subjects(started):
    async def get_joined_groups():
        return [GroupInfo(JID=JID(User="120363001", Server="g.us"), GroupName=GroupName(Name="Family")),
                GroupInfo(JID=JID(User="120363002", Server="g.us"), GroupName=GroupName(Name=""))]

    started.get_joined_groups = get_joined_groups
    assert await NeonizePort(started).joined_groups() == [("120363001@g.us", "Family"), ("120363002@g.us", "")]


async def test_lid_lookup_returns_the_phone_jid_or_none_for_an_empty_answer(started):
    answers = {"9876543210": JID(User="1234567890", Server="s.whatsapp.net"), "5550001": JID()}

    async def get_pn_from_lid(jid):
        return answers[jid.User]

    started.get_pn_from_lid = get_pn_from_lid
    port = NeonizePort(started)
    assert await port.pn_from_lid("9876543210@lid") == "1234567890@s.whatsapp.net"
    assert await port.pn_from_lid("5550001@lid") is None
