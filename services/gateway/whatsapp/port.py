"""The outbound port: the few neonize calls the gateway makes, behind a protocol tests can fake.

Inbound events are *not* behind this port: tests feed real ``MessageEv`` objects through neonize's own
dispatcher instead (stack-notes §1.6–1.7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
from neonize.utils.enum import ChatPresence, ChatPresenceMedia

from services.gateway.whatsapp.jid import USER_SERVER, jid_str, parse_jid, server_of

if TYPE_CHECKING:
    from neonize.aioze.client import NewAClient


class WhatsAppNotConnected(RuntimeError):
    """The neonize client was never connected, so the Go side has no client to call."""


class WhatsAppPort(Protocol):
    """Outbound WhatsApp operations. JIDs are ``"user@server"`` strings."""

    async def send_text(self, chat_jid: str, text: str) -> tuple[str, int]:
        """Send ``text`` verbatim (no prefixing here; see ``outbound_policy.reply_text``).

        Returns:
            ``(message_id, sent_at)`` with ``sent_at`` in epoch **seconds** (WhatsApp's server time).

        Raises:
            WhatsAppNotConnected: before the first connect.
            neonize.exc.SendMessageError: WhatsApp refused or the link is down (retry with backoff).
        """
        ...

    async def set_typing(self, chat_jid: str, composing: bool) -> None:
        """Typing indicator on (``composing``) or off (``paused``).

        Raises:
            WhatsAppNotConnected, neonize.exc.SendPresenceError: callers swallow these, as v1 did.
        """
        ...

    async def joined_groups(self) -> list[tuple[str, str]]:
        """``[(group_jid, subject), …]`` for every group the account is in (subject may be ``""``).

        Raises:
            WhatsAppNotConnected, neonize.exc.GetJoinedGroupsError.
        """
        ...

    async def pn_from_lid(self, jid: str) -> str | None:
        """Phone JID for a LID JID from whatsmeow's LID store, or ``None`` when unknown or not connected.

        Raises:
            neonize.exc.GetJIDFromStoreError: the store query failed.
        """
        ...


class NeonizePort:
    """:class:`WhatsAppPort` on a neonize ``NewAClient``. Construction does no I/O.

    Text goes out as ``Message(conversation=text)``: given a ``str``, neonize's ``send_message`` regex-parses
    ``@<digits>`` into mentions and calls ``get_group_info`` for ``@…@g.us`` patterns (stack-notes §1.3); a
    reply must be delivered exactly as written.
    """

    def __init__(self, client: NewAClient) -> None:
        self._client = client

    def _require_started(self) -> None:
        # Every neonize call looks the Go client up by uuid; before connect() there is none and the Go side
        # dereferences nil (upstream #192 "client is nil"), which can take the whole process down.
        if self._client.connect_task is None:
            raise WhatsAppNotConnected("the WhatsApp client has not been connected yet")

    async def send_text(self, chat_jid: str, text: str) -> tuple[str, int]:
        self._require_started()
        resp = await self._client.send_message(parse_jid(chat_jid), Message(conversation=text))
        return resp.ID, int(resp.Timestamp)  # SendResponse.Timestamp is .Unix(): seconds

    async def set_typing(self, chat_jid: str, composing: bool) -> None:
        self._require_started()
        state = ChatPresence.CHAT_PRESENCE_COMPOSING if composing else ChatPresence.CHAT_PRESENCE_PAUSED
        await self._client.send_chat_presence(parse_jid(chat_jid), state, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT)

    async def joined_groups(self) -> list[tuple[str, str]]:
        self._require_started()
        groups = await self._client.get_joined_groups()
        return [(jid_str(g.JID), g.GroupName.Name) for g in groups]

    async def pn_from_lid(self, jid: str) -> str | None:
        if self._client.connect_task is None:
            return None
        pn = jid_str(await self._client.get_pn_from_lid(parse_jid(jid)))
        return pn if server_of(pn) == USER_SERVER else None
