"""Inbound translation of real neonize MessageEv objects (nanoclaw-behaviour §4, §24.3 "Inbound", "LID")."""

from __future__ import annotations

import pytest
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContextInfo,
    DocumentMessage,
    ExtendedTextMessage,
    FutureProofMessage,
    ImageMessage,
    Message,
    ProtocolMessage,
    ReactionMessage,
    StickerMessage,
    VideoMessage,
)

from services.gateway.whatsapp.inbound import InboundContext
from services.gateway.whatsapp.lid import CachingLidResolver

SHARED = InboundContext(assistant_name="Andy", has_own_number=False)
OWN = InboundContext(assistant_name="Andy", has_own_number=True)


class NeverCalled:
    async def pn_for_lid(self, lid_jid: str) -> str | None:
        raise AssertionError(f"resolver consulted for {lid_jid}")


class FakeLookup:
    def __init__(self, answers: dict[str, str | None] | None = None, error: Exception | None = None) -> None:
        self.answers, self.error, self.calls = answers or {}, error, []

    async def pn_from_lid(self, jid: str) -> str | None:
        self.calls.append(jid)
        if self.error:
            raise self.error
        return self.answers.get(jid)


# --- basic translation ------------------------------------------------------------------------------------

async def test_group_message_becomes_message_received_with_id_text_sender_and_group_flag(wire, build):
    got = await wire.translate(build.message("hello @Andy", msg_id="MSG1"), SHARED)
    assert got.channel == "whatsapp"
    assert got.chat_jid == "120363001@g.us"
    assert got.message_id == "MSG1"
    assert got.sender == "15551234567@s.whatsapp.net"
    assert got.sender_name == "Alice"
    assert got.text == "hello @Andy"
    assert got.is_group is True
    assert got.is_from_me is False
    assert got.is_bot_message is False
    assert got.reply_to_message_id is None


async def test_direct_message_is_not_a_group(wire, build):
    dm = "15557654321@s.whatsapp.net"
    got = await wire.translate(build.message("hi", chat=dm, sender=dm), SHARED)
    assert (got.chat_jid, got.sender, got.is_group) == (dm, dm, False)


async def test_status_broadcast_is_skipped(wire, build):
    assert await wire.translate(build.message("my story", chat="status@broadcast"), SHARED) is None


async def test_event_without_a_message_is_skipped(wire, build):
    assert await wire.translate(build.message(None), SHARED) is None


async def test_timestamp_is_read_as_epoch_milliseconds(wire, build):
    got = await wire.translate(build.message("x", timestamp_ms=1_700_000_000_123), SHARED)
    assert got.timestamp == "2023-11-14T22:13:20.123Z"


async def test_a_timestamp_in_seconds_is_not_mistaken_for_1970(wire, build):
    got = await wire.translate(build.message("x", timestamp_ms=1_700_000_000), SHARED)
    assert got.timestamp == "2023-11-14T22:13:20.000Z"


async def test_without_push_name_the_sender_name_is_the_number_part_of_the_jid(wire, build):
    got = await wire.translate(build.message("hi", pushname=""), SHARED)
    assert got.sender_name == "15551234567"


async def test_a_sender_device_suffix_is_dropped_so_phone_and_web_are_one_sender(wire, build):
    got = await wire.translate(build.message("hi", sender="15551234567:12@s.whatsapp.net"), SHARED)
    assert got.sender == "15551234567@s.whatsapp.net"


async def test_is_from_me_is_passed_through(wire, build):
    got = await wire.translate(build.message("note to self", from_me=True), SHARED)
    assert got.is_from_me is True


# --- text extraction ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    Message(extendedTextMessage=ExtendedTextMessage(text="the text")),
    Message(imageMessage=ImageMessage(caption="the text", mimetype="image/jpeg")),
    Message(videoMessage=VideoMessage(caption="the text", mimetype="video/mp4")),
    Message(documentMessage=DocumentMessage(caption="the text", fileName="a.pdf")),
], ids=["extended-text", "image-caption", "video-caption", "document-caption"])
async def test_text_is_taken_from_extended_text_and_media_captions(wire, build, body):
    got = await wire.translate(build.message(body=body), SHARED)
    assert got.text == "the text"


@pytest.mark.parametrize("body", [
    Message(audioMessage=AudioMessage(seconds=3, PTT=True)),
    Message(imageMessage=ImageMessage(mimetype="image/jpeg")),
    Message(stickerMessage=StickerMessage(mimetype="image/webp")),
    Message(reactionMessage=ReactionMessage(text="👍")),
    Message(conversation="   "),
], ids=["voice-note", "image-without-caption", "sticker", "reaction", "blank"])
async def test_messages_without_text_are_not_delivered(wire, build, body):
    assert await wire.translate(build.message(body=body), SHARED) is None


async def test_an_ephemeral_container_is_unwrapped(wire, build):
    body = Message(ephemeralMessage=FutureProofMessage(message=Message(conversation="disappearing")))
    assert (await wire.translate(build.message(body=body), SHARED)).text == "disappearing"


async def test_a_view_once_image_caption_is_unwrapped(wire, build):
    inner = Message(imageMessage=ImageMessage(caption="look once", mimetype="image/jpeg"))
    body = Message(viewOnceMessageV2=FutureProofMessage(message=inner))
    assert (await wire.translate(build.message(body=body), SHARED)).text == "look once"


async def test_an_edited_message_delivers_the_new_text(wire, build):
    edit = ProtocolMessage(type=ProtocolMessage.MESSAGE_EDIT, editedMessage=Message(conversation="fixed typo"))
    body = Message(editedMessage=FutureProofMessage(message=Message(protocolMessage=edit)))
    got = await wire.translate(build.message(body=body, msg_id="EDIT1"), SHARED)
    assert (got.text, got.message_id) == ("fixed typo", "EDIT1")


# --- bot detection and the bot's LID mention ---------------------------------------------------------------

async def test_shared_number_bot_replies_are_recognised_by_the_name_prefix(wire, build):
    got = await wire.translate(build.message("Andy: here you go", from_me=True), SHARED)
    assert got.is_bot_message is True


async def test_shared_number_owner_messages_without_prefix_are_not_bot_messages(wire, build):
    got = await wire.translate(build.message("@Andy what's up", from_me=True), SHARED)
    assert got.is_bot_message is False


async def test_shared_number_detection_is_by_prefix_only_as_in_v1(wire, build):
    got = await wire.translate(build.message("Andy: pretending", from_me=False), SHARED)
    assert got.is_bot_message is True


async def test_own_number_bot_messages_are_recognised_by_is_from_me(wire, build):
    assert (await wire.translate(build.message("plain reply", from_me=True), OWN)).is_bot_message is True
    assert (await wire.translate(build.message("Andy: from a human", from_me=False), OWN)).is_bot_message is False


async def test_a_mention_of_the_bots_lid_is_rewritten_to_the_assistant_name(wire, build):
    ctx = InboundContext(assistant_name="Andy", bot_lid_user="84000111")
    got = await wire.translate(build.message("@84000111 what's the weather? cc @84000111"), ctx)
    assert got.text == "@Andy what's the weather? cc @Andy"


async def test_a_longer_number_that_starts_with_the_bots_lid_is_not_rewritten(wire, build):
    ctx = InboundContext(assistant_name="Andy", bot_lid_user="84000111")
    got = await wire.translate(build.message("ping @840001112"), ctx)
    assert got.text == "ping @840001112"


async def test_the_assistant_name_is_inserted_literally_even_with_regex_characters(wire, build):
    ctx = InboundContext(assistant_name=r"R2\1", bot_lid_user="84000111")
    got = await wire.translate(build.message("@84000111 hi"), ctx)
    assert got.text == r"@R2\1 hi"


async def test_with_its_own_number_a_mention_of_the_bots_phone_number_is_rewritten_too(wire, build):
    ctx = InboundContext(assistant_name="Andy", has_own_number=True, bot_phone_user="4915100000")
    got = await wire.translate(build.message("@4915100000 hello"), ctx)
    assert got.text == "@Andy hello"


async def test_on_a_shared_number_a_mention_of_the_owners_phone_number_is_left_alone(wire, build):
    ctx = InboundContext(assistant_name="Andy", has_own_number=False, bot_phone_user="4915100000")
    got = await wire.translate(build.message("@4915100000 are you coming?"), ctx)
    assert got.text == "@4915100000 are you coming?"


# --- LID translation ---------------------------------------------------------------------------------------

async def test_a_dm_from_a_lid_is_translated_to_the_phone_jid_from_sender_alt(wire, build):
    ev = build.message("hi", chat="9876543210@lid", sender="9876543210@lid", sender_alt="1234567890@s.whatsapp.net")
    got = await wire.translate(ev, SHARED)
    assert got.chat_jid == "1234567890@s.whatsapp.net"
    assert got.sender == "1234567890@s.whatsapp.net"
    assert got.is_group is False


async def test_my_own_dm_to_a_lid_chat_uses_recipient_alt_for_the_chat(wire, build):
    ev = build.message("hi", chat="9876543210@lid", sender="15550000000@s.whatsapp.net", from_me=True,
                       recipient_alt="1234567890@s.whatsapp.net")
    got = await wire.translate(ev, SHARED)
    assert got.chat_jid == "1234567890@s.whatsapp.net"
    assert got.sender == "15550000000@s.whatsapp.net"


async def test_a_group_sender_lid_is_translated_from_sender_alt(wire, build):
    ev = build.message("hi", sender="9876543210@lid", sender_alt="1234567890@s.whatsapp.net")
    got = await wire.translate(ev, SHARED)
    assert (got.chat_jid, got.sender) == ("120363001@g.us", "1234567890@s.whatsapp.net")


async def test_a_known_lid_without_sender_alt_is_translated_by_the_resolver(wire, build):
    ctx = InboundContext(assistant_name="Andy",
                         lid_resolver=CachingLidResolver(seed={"9876543210@lid": "1234567890@s.whatsapp.net"}))
    got = await wire.translate(build.message("hi", chat="9876543210@lid", sender="9876543210@lid"), ctx)
    assert (got.chat_jid, got.sender, got.is_group) == ("1234567890@s.whatsapp.net", "1234567890@s.whatsapp.net", False)


async def test_the_resolver_asks_the_whatsmeow_store_once_and_caches_the_answer(wire, build):
    lookup = FakeLookup({"9876543210@lid": "1234567890@s.whatsapp.net"})
    ctx = InboundContext(assistant_name="Andy", lid_resolver=CachingLidResolver(lookup=lookup))
    for n in range(2):
        got = await wire.translate(build.message("hi", sender="9876543210@lid", msg_id=f"M{n}"), ctx)
        assert got.sender == "1234567890@s.whatsapp.net"
    assert lookup.calls == ["9876543210@lid"]


@pytest.mark.parametrize("lookup", [FakeLookup({}), FakeLookup(error=RuntimeError("store closed"))],
                         ids=["not-in-store", "store-error"])
async def test_an_unknown_lid_passes_through_unchanged(wire, build, lookup):
    ctx = InboundContext(assistant_name="Andy", lid_resolver=CachingLidResolver(lookup=lookup))
    got = await wire.translate(build.message("hi", chat="5550001@lid", sender="5550001@lid"), ctx)
    assert (got.chat_jid, got.sender) == ("5550001@lid", "5550001@lid")
    assert got.sender_name == "Alice"


async def test_a_non_lid_jid_is_unchanged_and_the_resolver_is_not_consulted(wire, build):
    ctx = InboundContext(assistant_name="Andy", lid_resolver=NeverCalled())
    got = await wire.translate(build.message("hi"), ctx)
    assert got.sender == "15551234567@s.whatsapp.net"


# --- quoted replies ----------------------------------------------------------------------------------------

def quoting(text: str, *, stanza: str = "ORIG1", participant: str = "15557654321@s.whatsapp.net",
            quoted: Message | None = None) -> Message:
    info = ContextInfo(stanzaID=stanza, participant=participant,
                       quotedMessage=quoted if quoted is not None else Message(conversation="the original"))
    return Message(extendedTextMessage=ExtendedTextMessage(text=text, contextInfo=info))


async def test_a_quoted_reply_carries_the_quoted_id_text_and_author(wire, build):
    got = await wire.translate(build.message(body=quoting("I agree")), SHARED)
    assert got.text == "I agree"
    assert got.reply_to_message_id == "ORIG1"
    assert got.reply_to_text == "the original"
    assert got.reply_to_sender_name == "15557654321"


async def test_quoting_a_bot_reply_names_the_assistant(wire, build):
    body = quoting("@Andy and then?", participant="15551230000@s.whatsapp.net",
                   quoted=Message(conversation="Andy: first answer"))
    got = await wire.translate(build.message(body=body), SHARED)
    assert (got.reply_to_sender_name, got.reply_to_text) == ("Andy", "Andy: first answer")


async def test_on_an_own_number_quoting_the_bots_lid_names_the_assistant(wire, build):
    ctx = InboundContext(assistant_name="Andy", has_own_number=True, bot_lid_user="84000111")
    got = await wire.translate(build.message(body=quoting("why?", participant="84000111@lid")), ctx)
    assert got.reply_to_sender_name == "Andy"


async def test_quoting_yourself_uses_your_push_name(wire, build):
    got = await wire.translate(build.message(body=quoting("and also", participant="15551234567@s.whatsapp.net")),
                               SHARED)
    assert got.reply_to_sender_name == "Alice"


async def test_a_quoted_author_lid_is_translated_to_the_number(wire, build):
    ctx = InboundContext(assistant_name="Andy",
                         lid_resolver=CachingLidResolver(seed={"9876543210@lid": "1234567890@s.whatsapp.net"}))
    got = await wire.translate(build.message(body=quoting("yes", participant="9876543210@lid")), ctx)
    assert got.reply_to_sender_name == "1234567890"


async def test_a_quoted_image_contributes_its_caption(wire, build):
    quoted = Message(imageMessage=ImageMessage(caption="our flat", mimetype="image/jpeg"))
    got = await wire.translate(build.message(body=quoting("nice", quoted=quoted)), SHARED)
    assert got.reply_to_text == "our flat"


async def test_a_reply_on_an_image_caption_keeps_its_quote_context(wire, build):
    info = ContextInfo(stanzaID="ORIG2", participant="15557654321@s.whatsapp.net",
                       quotedMessage=Message(conversation="send a photo"))
    body = Message(imageMessage=ImageMessage(caption="here", mimetype="image/jpeg", contextInfo=info))
    got = await wire.translate(build.message(body=body), SHARED)
    assert (got.text, got.reply_to_message_id, got.reply_to_text) == ("here", "ORIG2", "send a photo")
