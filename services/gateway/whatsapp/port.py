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
    """The neonize client is not running (never connected, or stopped), so the Go side has no client to call."""


class WhatsAppPort(Protocol):
    """Outbound WhatsApp operations. JIDs are ``"user@server"`` strings."""

    async def send_text(self, chat_jid: str, text: str) -> tuple[str, int]:
        """Send ``text`` verbatim (no prefixing here; see ``outbound_policy.reply_text``).

        Returns:
            ``(message_id, sent_at)`` with ``sent_at`` in epoch **seconds** (WhatsApp's server time). Careful:
            ``MessageSent.sent_at`` reads a bare int as epoch *milliseconds* (``iso_utc``); pass
            ``datetime.fromtimestamp(sent_at, timezone.utc)``.

        Raises:
            WhatsAppNotConnected: the client is not running (before the first connect, or after stop).
            neonize.exc.SendMessageError: WhatsApp refused or the link is down (retry with backoff).
            ValueError: ``chat_jid`` is not ``user@server``.
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

    Calls are refused with :class:`WhatsAppNotConnected` unless the client's connect task is running (see
    ``_go_client_alive``). While whatsmeow is reconnecting the task still runs: a send then fails with
    ``SendMessageError`` and the caller retries (``outbound_policy.send_retry_delay``).

    Note: the neonize 0.5.2 Go side adds a ``<bot biz_bot="1"/>`` node to every message sent to a 1:1 chat
    unless the environment has ``NEONIZE_BOT_TAG=off`` (read at each send; upstream ``goneonize/main.go``
    ``shouldAddBotNode``). The gateway's deployment decides; this class does not touch the environment.

    Text goes out as ``Message(conversation=text)``: given a ``str``, neonize's ``send_message`` regex-parses
    ``@<digits>`` into mentions and calls ``get_group_info`` for ``@…@g.us`` patterns (stack-notes §1.3); a
    reply must be delivered exactly as written.
    """

    def __init__(self, client: NewAClient) -> None:
        self._client = client

    def _go_client_alive(self) -> bool:
        # Every neonize call looks the Go client up by uuid in a map. It is there only while the Go
        # Neonize() call runs, i.e. while connect_task is pending: before connect() there is none (upstream
        # #192 "client is nil"), and Stop() deletes it. Calling then dereferences nil in Go, which can take
        # the whole Python process down, so refuse on the Python side.
        task = self._client.connect_task
        return task is not None and not task.done()

    def _require_started(self) -> None:
        if not self._go_client_alive():
            raise WhatsAppNotConnected("the WhatsApp client is not running (not connected yet, or stopped)")

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
        if not self._go_client_alive():
            return None
        pn = jid_str(await self._client.get_pn_from_lid(parse_jid(jid)))
        return pn if server_of(pn) == USER_SERVER else None
