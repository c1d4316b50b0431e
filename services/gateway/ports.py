"""The narrow port every outbound channel implements for the gateway's delivery handler."""

from __future__ import annotations

from typing import Protocol


class ChannelDown(Exception):
    """The channel cannot send right now (disconnected); the request is retried later."""


class ChannelPort(Protocol):
    name: str

    @property
    def connected(self) -> bool: ...

    async def send(self, chat_jid: str, text: str, request_id: str) -> tuple[str, str]:
        """Deliver ``text``; return ``(channel message id, sent-at ISO UTC)``.

        Raises:
            ChannelDown: not connected (retry later). Any other exception: this attempt failed.
        """
        ...

    async def set_typing(self, chat_jid: str, composing: bool) -> None: ...
