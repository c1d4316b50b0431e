"""Connection lifecycle, independent of NATS: first connect with retry, status events, handler registration.

Rules (stack-notes §1.3–1.4):

- ``client.connect()`` returns at once with an ``asyncio.Task`` running the blocking Go client; a failed dial
  surfaces as a ``NeonizeError`` *from that task*, and is not retried by neonize. :func:`first_connect`
  turns that into an awaitable that raises, and :func:`connect_with_retry` retries it.
- After the first successful connect whatsmeow reconnects by itself (``DisconnectedEv`` … ``ConnectedEv``).
  Never call ``connect()`` again on a disconnect: that starts a second Go client on the same session
  (upstream #57). So :func:`register_handlers` only *reports* disconnects.
- Some states need the user: not paired, logged out, stream replaced, temporary ban, connect refused. Each
  becomes a ``ChannelStatusChanged`` whose ``action`` says what to do; during the first connect they end the
  attempt with :class:`ConnectBlocked`, which is never retried.
- Handlers must be registered before ``connect()``: the subscription list is serialised into the Go call.

NanoClaw v1 (nanoclaw-behaviour §21.5) exits on ``loggedOut`` and on a QR prompt; here the gateway reports
and leaves the decision (stop the client, exit) to its caller.

Typical use::

    signals = ConnectionSignals()
    register_handlers(client, on_message, on_status, signals=signals, db_path=str(session_db))
    task = await connect_with_retry(lambda: first_connect(client, signals), on_retry=publish_retrying)
    ...                                   # runs until shutdown or a status in NEEDS_USER
    await client.stop()                   # always (upstream #173)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar

from google.protobuf.message import Message as ProtoMessage
from neonize.aioze.events import (
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import ConnectFailureReason

from events.catalogue.chat import ChannelStatusChanged

if TYPE_CHECKING:
    from neonize.aioze.client import NewAClient

log = logging.getLogger(__name__)
T = TypeVar("T")

PAIR_ACTION = "run `nanoclaw whatsapp pair` again to link this gateway to WhatsApp"
UPGRADE_ACTION = "upgrade neonize (pip install -U 'nanoclaw-bus[whatsapp]') and restart the gateway"
REPLACED_ACTION = ("make sure only one gateway uses this session database (stop the other one), "
                   "then restart the gateway")
CONNECT_BACKOFF_BASE_SECONDS = 2.0
CONNECT_BACKOFF_CAP_SECONDS = 60.0

# ConnectFailure reasons that mean the session is gone (whatsmeow ConnectFailureReason.IsLoggedOut()).
_LOGGED_OUT_REASONS = {ConnectFailureReason.LOGGED_OUT, ConnectFailureReason.MAIN_DEVICE_GONE,
                       ConnectFailureReason.UNKNOWN_LOGOUT}

# Every connection-state event register_handlers subscribes to.
STATUS_EVENTS: tuple[type[ProtoMessage], ...] = (
    ConnectedEv, DisconnectedEv, KeepAliveTimeoutEv, KeepAliveRestoredEv, LoggedOutEv, StreamReplacedEv,
    TemporaryBanEv, ConnectFailureEv, ClientOutdatedEv,
)

# Statuses the catalogue says need the user (ChannelStatusChanged docstring): whatsmeow will not get past them.
NEEDS_USER = frozenset({"logged_out", "stream_replaced", "temporary_ban", "connect_failed"})


class ConnectGaveUp(RuntimeError):
    """:func:`connect_with_retry` used all its attempts; ``__cause__`` is the last error."""


class ConnectBlocked(RuntimeError):
    """The first connect reached a state only the user can fix (not paired, logged out, banned, replaced,
    outdated). Never retried. ``status`` is the payload that was reported, with its ``action``."""

    def __init__(self, status: ChannelStatusChanged) -> None:
        super().__init__(f"WhatsApp {status.status}: {status.detail}; {status.action}")
        self.status = status


@dataclass
class ConnectionSignals:
    """Shared between :func:`register_handlers` (which sets them) and :func:`first_connect` (which waits).

    Attributes:
        connected: set on every ``ConnectedEv``.
        blocked: set when a status in :data:`NEEDS_USER` arrives (or WhatsApp asks for a QR code);
            ``blocking_status`` holds that payload.
    """

    connected: asyncio.Event = field(default_factory=asyncio.Event)
    blocked: asyncio.Event = field(default_factory=asyncio.Event)
    blocking_status: ChannelStatusChanged | None = None

    def note(self, status: ChannelStatusChanged) -> None:
        if status.status == "connected":
            self.connected.set()
        elif status.status in NEEDS_USER:
            self.blocking_status = status
            self.blocked.set()


def connect_backoff(attempt: int, *, base: float = CONNECT_BACKOFF_BASE_SECONDS,
                    cap: float = CONNECT_BACKOFF_CAP_SECONDS) -> float:
    """Seconds to wait after failed connect attempt ``attempt`` (1-based): 2, 4, 8, 16, 32, 60, 60, … s.

    v1 retried a failed reconnect after a flat 5 s (nanoclaw-behaviour §21.5); exponential with a cap is
    kinder to a network that is down for hours and still quick after a blip.

    Raises:
        ValueError: ``attempt < 1``.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    return min(cap, base * 2.0 ** min(attempt - 1, 64))


async def connect_with_retry(
    connect: Callable[[], Awaitable[T]],
    *,
    attempts: int | None = None,
    backoff: Callable[[int], float] = connect_backoff,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    on_retry: Callable[[int, float, BaseException], Awaitable[None] | None] | None = None,
) -> T:
    """Call ``connect`` until it returns, sleeping ``backoff(n)`` seconds after the n-th failure.

    Args:
        connect: one attempt; returns on success, raises on failure (e.g. ``lambda: first_connect(client, …)``).
        attempts: give up after this many failures; ``None`` retries forever.
        backoff: failure number (1-based) → seconds.
        sleep: ``asyncio.sleep``; inject a fake in tests.
        retry_on: exceptions that mean "try again"; others propagate at once, and :class:`ConnectBlocked`
            always does.
        on_retry: called as ``(failure_number, delay_seconds, error)`` before each sleep (may be async), e.g.
            to publish :func:`status_retrying`.

    Returns:
        Whatever the successful ``connect()`` returned.

    Raises:
        ConnectGaveUp: ``attempts`` failures in a row (``__cause__`` = the last error).
        ConnectBlocked: at once (the user has to act first).
        Any exception outside ``retry_on``; ``asyncio.CancelledError`` is never swallowed.
    """
    failures = 0
    while True:
        try:
            return await connect()
        except ConnectBlocked:
            raise
        except retry_on as exc:
            failures += 1
            if attempts is not None and failures >= attempts:
                raise ConnectGaveUp(f"WhatsApp connect failed {failures} times: {exc}") from exc
            delay = backoff(failures)
            log.warning("WhatsApp connect attempt %d failed (%s); retrying in %.0f s", failures, exc, delay)
            if on_retry is not None:
                maybe = on_retry(failures, delay, exc)
                if maybe is not None:
                    await maybe
            await sleep(delay)


async def first_connect(client: NewAClient, signals: ConnectionSignals, *,
                        timeout: float | None = 120.0) -> asyncio.Task:
    """One connect attempt: start the Go client and wait until it is connected, has failed, or is blocked.

    ``signals`` must be the object given to :func:`register_handlers` for ``client``.

    Returns:
        The running client task (keep it; ``await client.stop()`` on shutdown).

    Raises:
        neonize.exc.NeonizeError: the dial failed (retryable; the Go client has already returned).
        TimeoutError: neither connected nor failed within ``timeout`` seconds; the client was stopped first,
            so a retry never runs two Go clients on one session (upstream #57).
        ConnectBlocked: not paired, logged out, banned, replaced or outdated; the client was stopped.
        RuntimeError: the Go client returned without an error and without connecting.
    """
    signals.connected.clear()
    signals.blocked.clear()
    task = await client.connect()
    waits = {asyncio.ensure_future(signals.connected.wait()), asyncio.ensure_future(signals.blocked.wait())}
    try:
        await asyncio.wait({task, *waits}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    if signals.connected.is_set():
        return task
    if task.done():
        task.result()  # re-raises the NeonizeError of a failed dial
        raise RuntimeError("the WhatsApp client stopped before connecting")
    await _stop(client, task)  # otherwise the Go side keeps going (and keeps rotating QR codes)
    if signals.blocked.is_set() and signals.blocking_status is not None:
        raise ConnectBlocked(signals.blocking_status)
    raise TimeoutError(f"WhatsApp did not connect within {timeout:.0f} s")


async def _stop(client: NewAClient, task: asyncio.Task, grace: float = 10.0) -> None:
    """Stop the Go client and give its task ``grace`` seconds to end, so a retry starts from nothing."""
    await client.stop()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if task in done and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"


def status_for_event(ev: ProtoMessage, now: datetime | None = None) -> ChannelStatusChanged | None:
    """Map a neonize connection event to a ``ChannelStatusChanged`` payload (``channel="whatsapp"``).

    Returns ``None`` for events that are not about the connection. ``at`` is ``now`` (default: the current
    UTC time). ``action`` is set whenever the user has to do something.
    """
    at = now or datetime.now(timezone.utc)

    def status(st: str, detail: str = "", action: str = "") -> ChannelStatusChanged:
        return ChannelStatusChanged(channel="whatsapp", status=st, detail=detail, action=action, at=at)

    if isinstance(ev, ConnectedEv):
        return status("connected")
    if isinstance(ev, KeepAliveRestoredEv):
        return status("connected", "keep-alive restored")
    if isinstance(ev, DisconnectedEv):
        return status("disconnected", "connection lost; whatsmeow reconnects by itself")
    if isinstance(ev, KeepAliveTimeoutEv):
        return status("disconnected", f"keep-alive timed out ({ev.ErrorCount} misses); the link is degraded")
    if isinstance(ev, LoggedOutEv):
        when = "at connect" if ev.OnConnect else "while connected"
        return status("logged_out", f"logged out {when} ({_reason(ev.Reason)}); the stored session is no longer "
                      "valid", PAIR_ACTION)
    if isinstance(ev, StreamReplacedEv):
        return status("stream_replaced", "another client opened this WhatsApp session; whatsmeow does not "
                      "reconnect", REPLACED_ACTION)
    if isinstance(ev, TemporaryBanEv):
        code = TemporaryBanEv.TempBanReason.Name(ev.Code) if ev.HasField("Code") else "unknown reason"
        # Expire is a duration in seconds (goneonize encoder: int64(ban.Expire.Seconds())).
        how_long = f"{ev.Expire / 3600:.1f} h" if ev.Expire > 0 else "an unknown time"
        return status("temporary_ban", f"WhatsApp temporarily banned this number ({code}) for {how_long}",
                      f"wait {how_long} before restarting the gateway, and lower the outbound rate limit")
    if isinstance(ev, ConnectFailureEv):
        refused = f"connect refused: {_reason(ev.Reason)} {ev.Message}".strip()
        if ev.Reason in _LOGGED_OUT_REASONS:
            return status("logged_out", refused, PAIR_ACTION)
        if ev.Reason == ConnectFailureReason.TEMP_BANNED:
            return status("temporary_ban", refused, "wait for the ban to expire before restarting the gateway")
        if ev.Reason == ConnectFailureReason.CLIENT_OUTDATED:
            return status("connect_failed", "WhatsApp says this client version is outdated", UPGRADE_ACTION)
        return status("connect_failed", refused, "check the gateway log; restart the gateway once WhatsApp is "
                      "reachable")
    if isinstance(ev, ClientOutdatedEv):
        return status("connect_failed", "WhatsApp says this client version is outdated", UPGRADE_ACTION)
    return None


def status_not_paired(db_path: str, now: datetime | None = None) -> ChannelStatusChanged:
    """The payload for "WhatsApp asked for a QR code": nothing is paired in ``db_path``."""
    return ChannelStatusChanged(channel="whatsapp", status="logged_out", detail=f"no paired device in {db_path}",
                                action=PAIR_ACTION.replace(" again", ""), at=now or datetime.now(timezone.utc))


def status_retrying(failures: int, delay: float, error: BaseException,
                    now: datetime | None = None) -> ChannelStatusChanged:
    """The payload for a failed first-connect attempt that will be retried (``status="connecting"``)."""
    return ChannelStatusChanged(channel="whatsapp", status="connecting",
                                detail=f"attempt {failures} failed ({error}); retrying in {delay:.0f} s",
                                at=now or datetime.now(timezone.utc))


def status_gave_up(error: BaseException, now: datetime | None = None) -> ChannelStatusChanged:
    """The payload after :class:`ConnectGaveUp`."""
    return ChannelStatusChanged(channel="whatsapp", status="connect_failed", detail=str(error),
                                action="check the network (can this host reach web.whatsapp.com?), then restart "
                                       "the gateway", at=now or datetime.now(timezone.utc))


def _reason(reason: int) -> str:
    try:
        return ConnectFailureReason.Name(reason)
    except ValueError:
        return f"reason {reason}"


def register_handlers(
    client: NewAClient,
    on_message: Callable[[MessageEv], Awaitable[None]],
    on_status: Callable[[ChannelStatusChanged], Awaitable[None]],
    *,
    signals: ConnectionSignals | None = None,
    db_path: str = "",
) -> None:
    """Register the gateway's handlers on ``client``. Call once, before ``client.connect()``.

    - ``MessageEv`` → ``await on_message(ev)``, one at a time in arrival order.
    - Connection events (:data:`STATUS_EVENTS`) → ``await on_status(status_for_event(ev))`` and
      ``signals.note(...)``. A disconnect is only reported: whatsmeow reconnects by itself.
    - A QR request (nothing paired) → ``on_status(status_not_paired(db_path))`` once, and ``signals`` is
      blocked. The QR is **not** printed: pairing is ``nanoclaw whatsapp pair``'s job, not the service log's.

    neonize keeps one handler per event type, so a later ``client.event(MessageEv)`` replaces ours.

    Raises:
        RuntimeError: ``client`` is already connected (its subscription list was fixed at connect time).
    """
    if client.connect_task is not None:
        raise RuntimeError("register WhatsApp handlers before client.connect(): neonize fixes the subscription "
                           "list at connect")

    # neonize schedules each event with run_coroutine_threadsafe and never looks at the result, so an
    # exception in a handler vanishes; and two messages' handlers would interleave at their first await.
    # The lock (FIFO in asyncio) keeps arrival order; the try/except makes failures visible.
    order = asyncio.Lock()

    async def report(payload: ChannelStatusChanged) -> None:
        if signals is not None:
            signals.note(payload)  # before any await: first_connect must see it even if on_status is slow
        async with order:  # a status change is ordered with the messages around it
            try:
                await on_status(payload)
            except Exception:
                log.exception("WhatsApp status handler failed for %s", payload.status)

    async def handle_message(_client: NewAClient, ev: MessageEv) -> None:
        async with order:
            try:
                await on_message(ev)
            except Exception:
                log.exception("WhatsApp message handler failed for message %s", ev.Info.ID)

    async def handle_status(_client: NewAClient, ev: ProtoMessage) -> None:
        payload = status_for_event(ev)
        if payload is not None:
            await report(payload)

    qr_seen = False

    async def handle_qr(_client: NewAClient, _data: bytes) -> None:
        nonlocal qr_seen
        if not qr_seen:  # whatsmeow calls back once per rotating code
            qr_seen = True
            await report(status_not_paired(db_path))

    client.event(MessageEv)(handle_message)
    for event_type in STATUS_EVENTS:
        client.event(event_type)(handle_status)
    client.event.qr(handle_qr)
