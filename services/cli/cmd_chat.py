"""``nanoclaw chat``: the terminal channel — a chat through the whole bus, interactive or scripted.

The terminal is a channel like WhatsApp: lines typed become ``MessageReceived`` (channel ``terminal``, chat
``term:<group>``), and this process delivers the ``OutboundMessageRequested`` events for that chat (printing
them, then recording ``MessageSent``). It needs a running bus (`nanoclaw up`); it survives the bus going away
and shows what arrived meanwhile (services/cli/chat_session.py).

Exit codes: 0 done (the input ended; scripted: every line answered); 1 the bus is not running at the start;
2 a configuration error; 3 scripted: no reply within ``--timeout``; 4 scripted: the queue gave up on the
chat's messages (``RunAbandoned``); 130 Ctrl+C.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from services.cli.chat_session import ChatSession
from services.cli.chat_terminal import Terminal
from services.cli.common import ConfigOption, CredentialsOption, load, run


def chat(group: str = typer.Option("main", "--group", "-g", help="group folder; the chat is term:<group>"),
         message: list[str] | None = typer.Option(None, "--message", "-m",
                                                  help="send this, wait for the reply, exit (repeatable: one after another)"),
         timeout: float = typer.Option(300.0, help="scripted (-m or piped stdin): seconds to wait for each reply"),
         config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Chat with the assistant in this terminal (Ctrl+D or /quit ends). Scripted with -m TEXT or lines on stdin:
    each line waits for its reply; exit 0 when all are answered, 3 on timeout, 4 when the assistant gave up."""
    settings, creds = load(config, credentials)
    interactive = not message and sys.stdin.isatty()
    session = ChatSession(settings, creds, group, Terminal(interactive=interactive), messages=message or None,
                          scripted=not interactive, timeout_s=timeout)
    code = run(session.run())
    if code:
        raise typer.Exit(code)
