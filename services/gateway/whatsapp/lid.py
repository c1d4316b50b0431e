"""LID → phone-number JID translation.

WhatsApp increasingly addresses people by LID (``9876543210@lid``), a per-account alias that hides the phone
number. NanoClaw keys DMs, allowlists and registrations by phone JID (``1234567890@s.whatsapp.net``), so the
gateway translates. NanoClaw v1 whatsapp.ts asks, in order: its local map (seeded with the bot's own LID),
Baileys' LID store, the message's ``senderPn``; an unknown LID passes through unchanged
(nanoclaw-behaviour §4.2, §24.3 "LID"). With neonize the message's own ``SenderAlt`` plays the ``senderPn``
role and is checked first by :mod:`inbound`; this module is the store lookup behind it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from services.gateway.whatsapp.jid import USER_SERVER, is_lid_jid, server_of

log = logging.getLogger(__name__)


class LidResolver(Protocol):
    """Port: look up the phone JID for a LID JID."""

    async def pn_for_lid(self, lid_jid: str) -> str | None:
        """``"9876543210@lid"`` → ``"1234567890@s.whatsapp.net"``, or ``None`` when unknown.
        Must not raise for an unknown LID."""
        ...


class PnLookup(Protocol):
    """The one outbound call :class:`CachingLidResolver` needs (``WhatsAppPort.pn_from_lid`` fits)."""

    async def pn_from_lid(self, jid: str) -> str | None: ...


class CachingLidResolver:
    """A :class:`LidResolver` over a seed map plus an optional store lookup, caching what it learns.

    Args:
        seed: known ``lid_jid → pn_jid`` pairs, e.g. the bot's own LID → its own number (as NanoClaw seeds its
            map from ``sock.user``).
        lookup: whatsmeow's LID store through the port (``NeonizePort``); ``None`` means seed/learned only.

    Lookup errors are logged and treated as "unknown" (the LID then passes through), never raised: a
    message must not be lost because a mapping query failed.
    """

    def __init__(self, seed: dict[str, str] | None = None, lookup: PnLookup | None = None) -> None:
        self._map: dict[str, str] = dict(seed or {})
        self._lookup = lookup

    def learn(self, lid_jid: str, pn_jid: str) -> None:
        """Remember a pair seen elsewhere (e.g. a message's ``SenderAlt``). Non-phone values are ignored."""
        if is_lid_jid(lid_jid) and server_of(pn_jid) == USER_SERVER:
            self._map[lid_jid] = pn_jid

    async def pn_for_lid(self, lid_jid: str) -> str | None:
        if lid_jid in self._map:
            return self._map[lid_jid]
        if self._lookup is None:
            return None
        try:
            pn = await self._lookup.pn_from_lid(lid_jid)
        except Exception as exc:  # noqa: BLE001 - any store failure means "unknown", see class docstring
            log.warning("LID lookup for %s failed: %s", lid_jid, exc)
            return None
        if pn and server_of(pn) == USER_SERVER:
            self._map[lid_jid] = pn
            return pn
        return None
