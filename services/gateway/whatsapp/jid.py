"""JID strings as the rest of the system sees them: ``"user@server"``.

NanoClaw stores chats and senders as plain ``user@server`` strings (``…@g.us`` groups, ``…@s.whatsapp.net``
DMs; nanoclaw-behaviour §4.6). neonize hands us ``JID`` protos that may also carry a device or agent number
(``Jid2String`` would give ``"4915…:12@s.whatsapp.net"``); we drop those, because the same person writing
from their phone and from WhatsApp Web must be the same sender.
"""

from __future__ import annotations

from neonize.proto.Neonize_pb2 import JID

GROUP_SERVER = "g.us"
USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
STATUS_BROADCAST = "status@broadcast"


def jid_str(jid: JID) -> str:
    """``JID`` proto → ``"user@server"`` without device/agent; ``""`` for an empty JID."""
    if not jid.User and not jid.Server:
        return ""
    return f"{jid.User}@{jid.Server}" if jid.User else jid.Server


def parse_jid(value: str) -> JID:
    """``"user@server"`` (a device suffix ``user:3@server`` is dropped) → ``JID`` proto for neonize calls.

    Raises:
        ValueError: no ``@`` in ``value``.
    """
    user, sep, server = value.rpartition("@")
    if not sep or not server:
        raise ValueError(f"{value!r} is not a WhatsApp JID (user@server)")
    return JID(User=user.split(":", 1)[0], Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


def server_of(jid: str) -> str:
    """The part after ``@`` (``""`` if there is none)."""
    return jid.rpartition("@")[2] if "@" in jid else ""


def user_of(jid: str) -> str:
    """The part before ``@`` (the whole string if there is no ``@``)."""
    return jid.rpartition("@")[0] if "@" in jid else jid


def is_group_jid(jid: str) -> bool:
    """Groups live on ``g.us`` (NanoClaw v1 whatsapp.ts: ``jid.endsWith('@g.us')``)."""
    return server_of(jid) == GROUP_SERVER


def is_lid_jid(jid: str) -> bool:
    """A "linked identity" JID (``…@lid``): WhatsApp's privacy alias that hides the phone number."""
    return server_of(jid) == LID_SERVER


def owns_jid(jid: str) -> bool:
    """Whether a chat JID belongs to the WhatsApp channel: ``@g.us`` and ``@s.whatsapp.net`` (NanoClaw v1
    ``ownsJid``, nanoclaw-behaviour §24.3). ``tg:…``, ``dc:…`` and anything else belong to other channels."""
    return server_of(jid) in (GROUP_SERVER, USER_SERVER)
