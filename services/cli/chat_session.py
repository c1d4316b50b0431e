"""One ``nanoclaw chat`` session: the terminal channel's connection to the bus, kept across bus restarts.

- **Delivery.** This process is the terminal channel: it prints each ``OutboundMessageRequested`` for
  ``term:<group>`` and records ``MessageSent`` (the receipt every request gets, docs/architecture.md). A reply
  without a receipt was never shown, so on start the chat's outbound requests are read from the log and the
  ones without a receipt are shown first: replies made while the chat was closed are not lost.
- **Reconnecting.** When the bus goes away (``nanoclaw up`` stopped or restarting) the session says so once,
  tries again every second with fresh credentials (a restarted ``up`` has a new port file and new passwords),
  and follows the log again from the last position it had read: what arrived meanwhile is shown. A line typed
  while the bus is down is sent when it is back (same message id: stored once).
- **Scripted** (``-m TEXT``, or lines piped on stdin): each line is sent, then the session waits for the
  reply (the next reply to this chat stored after the line) before the next line, and ends when the last one
  is answered. Exit codes: :data:`EXIT_OK`, :data:`EXIT_NO_REPLY` (none within the timeout),
  :data:`EXIT_ABANDONED` (the queue gave up on the chat's messages); a bus that cannot be reached at the start
  is exit 1 and a configuration error exit 2 (services/cli/common.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import threading
import uuid
from dataclasses import dataclass

import nats.errors

from events.catalogue.chat import MessageReceived, MessageSent
from events.catalogue.types import iso_utc
from events.envelope import CloudEvent, decode_events, utcnow
from events.errors import EventStoreError, InvalidEvent
from events.subjects import event_filter
from services.cli.bus import bus, running_embedded_url
from services.cli.chat_terminal import Terminal
from services.cli.cmd_groups import current_groups, register_group
from services.cli.common import console
from services.harness.connect import NatsUnavailable
from services.harness.emit import append_emit
from services.harness.service import Emit
from services.router.trigger import default_trigger

EXIT_OK = 0
EXIT_NO_REPLY = 3
EXIT_ABANDONED = 4
RECONNECT_S = 1.0
"""Seconds between attempts to reach the bus again."""
QUIT_GRACE_S = 0.2
"""Interactive /quit: how long a reply already on its way may still print."""
_BUS_DOWN = (nats.errors.Error, EventStoreError, NatsUnavailable, OSError, TimeoutError)


@dataclass
class _Waiting:
    """A scripted line sent at stream sequence ``after``; its reply is due by ``deadline`` (loop time)."""

    after: int
    deadline: float


class ChatSession:
    """Args: ``settings``/``creds``: the loaded configuration; ``folder``: the group (chat ``term:<folder>``);
    ``terminal``: where replies go; ``messages``: scripted lines (``-m``), else lines are read from stdin;
    ``scripted``: wait for each line's reply and end after the last (``-m`` or piped stdin); ``timeout_s``: how
    long a scripted line waits for its reply."""

    def __init__(self, settings, creds, folder: str, terminal: Terminal, *, messages: list[str] | None,
                 scripted: bool, timeout_s: float):
        self.settings, self.creds = settings, creds
        self.folder, self.jid = folder, f"term:{folder}"
        self.assistant = settings.assistant_name
        self.terminal = terminal
        self.scripted = scripted
        self.timeout_s = timeout_s
        self.user = getpass.getuser()
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        for line in messages or ():
            self.lines.put_nowait(line)
        if messages is not None:
            self.lines.put_nowait(None)
        self.read_stdin = messages is None
        self.quit = asyncio.Event()
        self.position = 0
        self.shown: set[str] = set()
        self.last_reply_seq = 0
        self.abandoned_seq = 0
        self.changed = asyncio.Event()
        self.unsent: tuple[str, str] | None = None
        self.waiting: _Waiting | None = None

    async def run(self) -> int:
        """Chat until the input ends (interactive: Ctrl+D or /quit; scripted: the last line answered).

        Raises:
            NatsUnavailable: the bus cannot be reached at the start.
        """
        if self.read_stdin:
            self._start_stdin()
        connected = down_said = False
        while True:
            try:
                if connected and not self.settings.nats.urls and running_embedded_url(self.settings) is None:
                    # Not through bus(): finding no server, it would take the data directory's lock for a moment,
                    # and an `up` starting at that instant would refuse to start.
                    raise NatsUnavailable("the bus is not running")
                async with bus(self.settings, self.creds, name="nanoclaw-chat", start_embedded=False) as (_nc, store):
                    if not connected:
                        await self._register(store)
                        self.position = await store.last_seq()
                        await self._catch_up(store, self.position)
                    else:
                        console.print("reconnected to the bus")
                    connected, down_said = True, False
                    result = await self._connected(store)
                    if result is not None:
                        return result
            except _BUS_DOWN as exc:
                if not connected:
                    raise NatsUnavailable(str(exc) if isinstance(exc, NatsUnavailable) else
                                          f"the bus is not reachable: {type(exc).__name__}: {exc}") from None
            if not down_said:
                console.print("[yellow]the bus is down[/yellow]; reconnecting"
                              + (" (Ctrl+D or /quit ends)" if not self.scripted else ""))
                down_said = True
            result = await self._wait_for_bus()
            if result is not None:
                return result

    async def _wait_for_bus(self) -> int | None:
        """Pause before the next attempt; an exit code when the session should end meanwhile."""
        if self.scripted or self.quit.is_set():
            await asyncio.sleep(RECONNECT_S)
        else:  # interactive: Ctrl+D or /quit ends the wait at once
            try:
                async with asyncio.timeout(RECONNECT_S):
                    await self.quit.wait()
            except TimeoutError:
                pass
        if self.quit.is_set() and not self.scripted and self.unsent is None:
            return EXIT_OK
        if self.waiting is not None and asyncio.get_running_loop().time() > self.waiting.deadline:
            return self._no_reply()
        return None

    async def _connected(self, store) -> int | None:
        """Follow and talk until the talk ends (its exit code) or the bus goes away (None)."""
        follow = asyncio.create_task(self._follow(store))
        talk = asyncio.create_task(self._talk(store))
        try:
            done, _ = await asyncio.wait({follow, talk}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (follow, talk):
                task.cancel()
            await asyncio.gather(follow, talk, return_exceptions=True)
        if talk in done and not talk.cancelled() and talk.exception() is None:
            return talk.result()
        errors = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
        if errors and not isinstance(errors[0], _BUS_DOWN):
            raise errors[0]
        raise nats.errors.ConnectionClosedError  # the follow ended: the connection is gone

    async def _register(self, store) -> None:
        groups = await current_groups(store)
        if not any(g["jid"] == self.jid for g in groups):
            is_main = self.folder == "main" and not any(g["is_main"] for g in groups)
            await register_group(store, jid=self.jid, name=f"terminal {self.folder}", folder=self.folder,
                                 trigger=default_trigger(self.assistant), requires_trigger=False, is_main=is_main)
            console.print(f"registered {self.jid} as group '{self.folder}'{' (main)' if is_main else ''}")
        console.print(f"chatting as {self.user} in {self.jid}" + ("" if self.scripted else "; Ctrl+D or /quit ends"))

    def _start_stdin(self) -> None:
        """Read stdin in a daemon thread: a thread blocked in ``input()`` must not keep the process alive when
        the session ends first (a scripted chat that timed out while its pipe is still open)."""
        loop = asyncio.get_running_loop()

        def read() -> None:
            while True:
                line = self.terminal.read_line()
                ended = line is None or (not self.scripted and line.strip() == "/quit")
                try:
                    loop.call_soon_threadsafe(*((self._input_ended,) if ended else (self.lines.put_nowait, line)))
                except RuntimeError:
                    return  # the session is over (its loop closed)
                if ended:
                    return

        threading.Thread(target=read, name="nanoclaw-chat-stdin", daemon=True).start()

    def _input_ended(self) -> None:
        self.quit.set()
        self.lines.put_nowait(None)

    # -- talking -------------------------------------------------------------------------------------------

    async def _talk(self, store) -> int:
        while True:
            if self.unsent is not None:
                await self._send(store)
            if self.waiting is not None:
                code = await self._await_reply()
                if code is not None:
                    return code
            line = await self.lines.get()
            if line is None:
                self.lines.put_nowait(None)  # stays at the end for a talk resumed after a reconnect
                if not self.scripted:
                    await asyncio.sleep(QUIT_GRACE_S)  # let a reply that is on its way print
                return EXIT_OK
            if not line.strip():
                continue
            self.unsent = (uuid.uuid4().hex, line)
            await self._send(store)

    async def _send(self, store) -> None:
        mid, text = self.unsent  # type: ignore[misc]
        msg = MessageReceived(channel="terminal", chat_jid=self.jid, message_id=mid, sender=f"term:{self.user}",
                              sender_name=self.user, text=text, timestamp=iso_utc(utcnow()), is_from_me=True)
        result = await append_emit(store, Emit.new(f"{self.jid}/{mid}", msg), source="terminal", msg_id=f"terminal:{mid}")
        self.unsent = None
        if self.scripted:
            self.waiting = _Waiting(result.seq, asyncio.get_running_loop().time() + self.timeout_s)

    async def _await_reply(self) -> int | None:
        """Until the waited-for line has a reply (None: go on), or the exit code when it will not get one."""
        waiting = self.waiting
        assert waiting is not None
        loop = asyncio.get_running_loop()
        while self.last_reply_seq <= waiting.after:
            if self.abandoned_seq > waiting.after:
                self.waiting = None
                return EXIT_ABANDONED
            remaining = waiting.deadline - loop.time()
            if remaining <= 0:
                return self._no_reply()
            self.changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self.changed.wait()
            except TimeoutError:
                pass
        self.waiting = None
        return None

    def _no_reply(self) -> int:
        console.print(f"[red]error[/red]: no reply within {self.timeout_s:g} s (is `nanoclaw up` running its agents? "
                      f"see `nanoclaw status` and `nanoclaw failures`)")
        return EXIT_NO_REPLY

    # -- receiving -----------------------------------------------------------------------------------------

    async def _catch_up(self, store, until: int) -> None:
        """Show the chat's replies that never got a receipt (made while no chat was open), oldest first."""
        requests: dict[str, tuple[int, CloudEvent]] = {}
        receipts: set[str] = set()
        async with contextlib.aclosing(store.read_raw(subject_filter=event_filter("chat", "outbound"))) as log:
            async for raw in log:
                if raw.seq > until:
                    break
                try:
                    events = decode_events(raw.data)
                except InvalidEvent:
                    continue
                for ev in events:
                    if ev.eventtype == "OutboundMessageRequested" and ev.data.get("chat_jid") == self.jid:
                        requests.setdefault(ev.aggregateid, (raw.seq, ev))
                    elif ev.eventtype in ("MessageSent", "MessageDeliveryFailed"):
                        receipts.add(ev.aggregateid)
        missed = [(seq, ev) for agg, (seq, ev) in requests.items() if agg not in receipts]
        if missed:
            console.print(f"{len(missed)} repl{'y' if len(missed) == 1 else 'ies'} made while this chat was closed:")
        for seq, ev in sorted(missed, key=lambda item: item[0]):
            await self._deliver(store, ev, seq)

    async def _follow(self, store) -> None:
        async for raw in store.read_raw(after_seq=self.position, follow=True):
            try:
                events = decode_events(raw.data)
            except InvalidEvent:
                events = []  # not a valid commit: skipped by every follower (docs/events.md); a reply is never in one
            for ev in events:
                if ev.data.get("chat_jid") == self.jid:
                    await self._on_event(store, ev, raw.seq)
            self.position = raw.seq

    async def _on_event(self, store, ev: CloudEvent, seq: int) -> None:
        if ev.eventtype == "AgentTurnRequested":
            console.print("[dim]… turn requested[/dim]")
        elif ev.eventtype == "OutboundMessageRequested":
            await self._deliver(store, ev, seq)
        elif ev.eventtype == "RunAbandoned":
            console.print(f"[red]the assistant gave up on these messages[/red] after {ev.data.get('attempts')} attempts "
                          f"(`nanoclaw failures`); send another message to try again", highlight=False)
            self.abandoned_seq = max(self.abandoned_seq, seq)
            self.changed.set()

    async def _deliver(self, store, ev: CloudEvent, seq: int) -> None:
        if ev.aggregateid not in self.shown:
            self.terminal.show(f"{self.assistant}: {ev.data['text']}")
            self.shown.add(ev.aggregateid)
            sent = MessageSent(channel="terminal", chat_jid=self.jid, channel_message_id=ev.id, sent_at=iso_utc(utcnow()))
            await append_emit(store, Emit.append(ev.aggregateid, sent), source="terminal", msg_id=f"sent:{ev.id}")
        self.last_reply_seq = max(self.last_reply_seq, seq)
        self.changed.set()
