"""``nanoclaw chat``: the terminal channel — an interactive chat through the whole bus.

The terminal is a channel like WhatsApp: lines typed become ``MessageReceived`` (channel ``terminal``, chat
``term:<group>``), and this process delivers the ``OutboundMessageRequested`` events for that chat (printing
them, then recording ``MessageSent``). It needs a running bus (`nanoclaw up`).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import uuid
from pathlib import Path

import typer

from events.catalogue.chat import MessageReceived, MessageSent
from events.catalogue.types import iso_utc
from events.envelope import decode_events, utcnow
from events.errors import InvalidEvent
from services.cli.bus import bus
from services.cli.cmd_groups import current_groups, register_group
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.harness.runner import append_emit
from services.harness.service import Emit
from services.router.trigger import default_trigger


def chat(group: str = typer.Option("main", "--group", "-g", help="group folder; the chat is term:<group>"),
         config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Chat with the assistant in this terminal (Ctrl+D or /quit ends)."""
    settings, creds = load(config, credentials)
    run(_chat(settings, creds, group))


async def _chat(settings, creds, folder: str) -> None:
    jid = f"term:{folder}"
    user = getpass.getuser()
    async with bus(settings, creds, name="nanoclaw-chat", start_embedded=False) as (_nc, store):
        groups = await current_groups(store)
        if not any(g["jid"] == jid for g in groups):
            is_main = folder == "main" and not any(g["is_main"] for g in groups)
            await register_group(store, jid=jid, name=f"terminal {folder}", folder=folder,
                                 trigger=default_trigger(settings.assistant_name), requires_trigger=False, is_main=is_main)
            console.print(f"registered {jid} as group '{folder}'{' (main)' if is_main else ''}")
        console.print(f"chatting as {user} in {jid}; Ctrl+D or /quit ends")
        start = await store.last_seq()
        replies = asyncio.create_task(_print_replies(store, jid, settings.assistant_name, start))
        try:
            while True:
                line = await asyncio.to_thread(_read_line)
                if line is None or line.strip() == "/quit":
                    break
                if not line.strip():
                    continue
                mid = uuid.uuid4().hex
                msg = MessageReceived(channel="terminal", chat_jid=jid, message_id=mid, sender=f"term:{user}",
                                      sender_name=user, text=line, timestamp=iso_utc(utcnow()), is_from_me=True)
                await append_emit(store, Emit.new(f"{jid}/{mid}", msg), source="terminal", msg_id=f"terminal:{mid}")
            await asyncio.sleep(0.2)  # let a reply that is on its way print
        finally:
            replies.cancel()
            await asyncio.gather(replies, return_exceptions=True)


def _read_line() -> str | None:
    try:
        return input() if not sys.stdin.isatty() else input("you> ")
    except EOFError:
        return None


async def _print_replies(store, jid: str, assistant: str, after: int) -> None:
    async for raw in store.read_raw(after_seq=after, follow=True):
        try:
            events = decode_events(raw.data)
        except InvalidEvent:
            continue  # not a valid commit: skipped by every follower (docs/events.md), a reply is never in one
        for ev in events:
            if ev.data.get("chat_jid") != jid:
                continue
            if ev.eventtype == "AgentTurnRequested":
                console.print("[dim]… turn requested[/dim]")
            elif ev.eventtype == "OutboundMessageRequested":
                out.print(f"{assistant}: {ev.data['text']}", highlight=False, markup=False)
                sent = MessageSent(channel="terminal", chat_jid=jid, channel_message_id=ev.id, sent_at=iso_utc(utcnow()))
                await append_emit(store, Emit.append(ev.aggregateid, sent), source="terminal", msg_id=f"sent:{ev.id}")
