"""Connection lifecycle: retrying the first connect, status events, handler registration
(stack-notes §1.3–1.4, nanoclaw-behaviour §21.5, §24.3 "Connect", "Auth", "Reconnect")."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timezone

import pytest
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
from neonize.exc import NeonizeError
from neonize.proto.Neonize_pb2 import ConnectFailureReason

from services.gateway.whatsapp.connection import (
    ConnectBlocked,
    ConnectGaveUp,
    ConnectionSignals,
    connect_backoff,
    connect_with_retry,
    first_connect,
    register_handlers,
    status_for_event,
    status_gave_up,
    status_not_paired,
    status_retrying,
)

NOW = datetime(2024, 1, 1, 13, 30, tzinfo=timezone.utc)


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Gateway:
    """Collects what register_handlers delivers."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue = asyncio.Queue()
        self.statuses: asyncio.Queue = asyncio.Queue()

    async def on_message(self, ev: MessageEv) -> None:
        self.messages.put_nowait(ev)

    async def on_status(self, payload) -> None:
        self.statuses.put_nowait(payload)

    async def next_status(self):
        return await asyncio.wait_for(self.statuses.get(), 5)


@pytest.fixture
async def gateway(wire):
    gw = Gateway()
    gw.signals = ConnectionSignals()

    async def must_not_reconnect(*_a, **_k):
        raise AssertionError("the gateway called connect() again; whatsmeow reconnects by itself")

    register_handlers(wire.client, gw.on_message, gw.on_status, signals=gw.signals,
                      db_path="/data/whatsapp/session.sqlite3")
    wire.client.connect = must_not_reconnect  # anything after registration must not (re)connect
    return gw


# --- connect_with_retry ------------------------------------------------------------------------------------

async def test_first_connect_is_retried_with_exponential_backoff_until_it_succeeds():
    outcomes = [NeonizeError("no such host"), NeonizeError("no such host"), "client-task"]

    async def connect():
        result = outcomes.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    sleep = FakeSleep()
    assert await connect_with_retry(connect, sleep=sleep) == "client-task"
    assert sleep.calls == [2.0, 4.0]


async def test_connect_gives_up_after_the_configured_attempts_with_the_last_error_as_cause():
    calls = 0

    async def connect():
        nonlocal calls
        calls += 1
        raise NeonizeError(f"dial failed {calls}")

    sleep = FakeSleep()
    with pytest.raises(ConnectGaveUp) as info:
        await connect_with_retry(connect, attempts=3, sleep=sleep)
    assert calls == 3 and sleep.calls == [2.0, 4.0]
    assert str(info.value.__cause__) == "dial failed 3"


async def test_a_non_retryable_error_propagates_at_once():
    async def connect():
        raise KeyError("a bug, not a network problem")

    sleep = FakeSleep()
    with pytest.raises(KeyError):
        await connect_with_retry(connect, sleep=sleep, retry_on=(NeonizeError,))
    assert sleep.calls == []


async def test_a_state_that_needs_the_user_is_never_retried():
    async def connect():
        raise ConnectBlocked(status_not_paired("/data/s.sqlite3", NOW))

    sleep = FakeSleep()
    with pytest.raises(ConnectBlocked, match="nanoclaw whatsapp pair"):
        await connect_with_retry(connect, sleep=sleep)
    assert sleep.calls == []


async def test_each_retry_is_reported_before_sleeping():
    reports = []
    outcomes = [NeonizeError("down"), "ok"]

    async def connect():
        result = outcomes.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    async def on_retry(n, delay, err):
        reports.append(status_retrying(n, delay, err, NOW))

    await connect_with_retry(connect, sleep=FakeSleep(), on_retry=on_retry)
    assert [(r.status, r.detail) for r in reports] == [("connecting", "attempt 1 failed (down); retrying in 2 s")]


def test_connect_backoff_doubles_and_is_capped_at_a_minute():
    assert [connect_backoff(n) for n in range(1, 9)] == [2, 4, 8, 16, 32, 60, 60, 60]
    assert connect_backoff(10_000) == 60
    with pytest.raises(ValueError):
        connect_backoff(0)


def test_giving_up_tells_the_user_to_check_the_network():
    s = status_gave_up(ConnectGaveUp("WhatsApp connect failed 5 times: no such host"), NOW)
    assert s.status == "connect_failed" and "network" in s.action


# --- first_connect (a fake client: nothing may dial out in tests) ------------------------------------------

class FakeClient:
    def __init__(self, run) -> None:
        self._run, self.stopped, self.connect_calls, self.task = run, False, 0, None

    async def connect(self):
        self.connect_calls += 1
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self.task

    async def stop(self):
        self.stopped = True
        self.task.cancel()


async def test_first_connect_raises_the_dial_error_from_the_client_task():
    async def run():
        raise NeonizeError("failed to dial whatsapp web websocket")

    with pytest.raises(NeonizeError, match="failed to dial"):
        await first_connect(FakeClient(run), ConnectionSignals())


async def test_first_connect_returns_the_running_task_once_connected():
    signals = ConnectionSignals()

    async def run():
        signals.connected.set()  # as the ConnectedEv handler would
        await asyncio.sleep(3600)

    task = await first_connect(FakeClient(run), signals)
    assert not task.done()
    task.cancel()


async def test_first_connect_that_hangs_stops_the_client_before_raising_a_retryable_timeout():
    client = FakeClient(lambda: asyncio.sleep(3600))
    with pytest.raises(TimeoutError):
        await first_connect(client, ConnectionSignals(), timeout=0.05)
    assert client.stopped and client.task.cancelled()


async def test_retrying_a_failed_first_connect_connects_the_same_client_again():
    results = iter([NeonizeError("down"), None])
    signals = ConnectionSignals()

    async def run():
        err = next(results)
        if err:
            raise err
        signals.connected.set()
        await asyncio.sleep(3600)

    client = FakeClient(run)
    task = await connect_with_retry(lambda: first_connect(client, signals), sleep=FakeSleep())
    assert client.connect_calls == 2 and not task.done()
    task.cancel()


def go_side(wire, *events, qr: bytes | None = None):
    """A stand-in for ``client.connect``: starts a task that plays events through neonize's real callbacks."""
    async def run():
        if qr is not None:
            await wire.qr(qr)
        await wire.feed(*events)
        await asyncio.sleep(3600)

    async def connect():
        wire.client.connect_task = asyncio.get_running_loop().create_task(run())
        return wire.client.connect_task

    async def stop():
        wire.client.stopped = True
        wire.client.connect_task.cancel()

    wire.client.connect, wire.client.stop, wire.client.stopped = connect, stop, False


async def test_first_connect_with_registered_handlers_returns_on_the_real_connected_event(wire):
    signals, statuses = ConnectionSignals(), []

    async def on_status(s):
        statuses.append(s.status)

    register_handlers(wire.client, Gateway().on_message, on_status, signals=signals)
    go_side(wire, ConnectedEv(status=True))
    task = await first_connect(wire.client, signals, timeout=5)
    assert not task.done() and statuses == ["connected"]
    task.cancel()


async def test_first_connect_without_a_stored_device_stops_the_client_and_says_to_pair(wire):
    signals = ConnectionSignals()
    register_handlers(wire.client, Gateway().on_message, Gateway().on_status, signals=signals,
                      db_path="/data/whatsapp/session.sqlite3")
    go_side(wire, qr=b"2@abc,def")
    with pytest.raises(ConnectBlocked, match="nanoclaw whatsapp pair") as info:
        await first_connect(wire.client, signals, timeout=5)
    assert info.value.status.detail == "no paired device in /data/whatsapp/session.sqlite3"
    assert wire.client.stopped


async def test_first_connect_logged_out_at_connect_stops_the_client_and_says_to_pair_again(wire):
    signals = ConnectionSignals()
    register_handlers(wire.client, Gateway().on_message, Gateway().on_status, signals=signals)
    go_side(wire, LoggedOutEv(OnConnect=True, Reason=ConnectFailureReason.LOGGED_OUT))
    with pytest.raises(ConnectBlocked) as info:
        await first_connect(wire.client, signals, timeout=5)
    assert info.value.status.status == "logged_out" and "pair" in info.value.status.action
    assert wire.client.stopped


# --- status mapping ----------------------------------------------------------------------------------------

def test_connection_events_map_to_channel_status_with_actions_where_the_user_must_act():
    cases = {
        "connected": ConnectedEv(status=True),
        "disconnected": DisconnectedEv(status=True),
        "logged_out": LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT),
        "stream_replaced": StreamReplacedEv(),
        "temporary_ban": TemporaryBanEv(Code=TemporaryBanEv.SENT_TOO_MANY_SAME_MESSAGE, Expire=7200),
    }
    for expected, ev in cases.items():
        s = status_for_event(ev, NOW)
        assert (s.channel, s.status, s.at) == ("whatsapp", expected, "2024-01-01T13:30:00.000Z")
        assert bool(s.action) == (expected not in ("connected", "disconnected")), expected


def test_logged_out_tells_the_user_to_pair_again():
    s = status_for_event(LoggedOutEv(OnConnect=True, Reason=ConnectFailureReason.MAIN_DEVICE_GONE), NOW)
    assert "nanoclaw whatsapp pair" in s.action and "MAIN_DEVICE_GONE" in s.detail


def test_temporary_ban_reports_the_reason_and_how_long_to_wait():
    s = status_for_event(TemporaryBanEv(Code=TemporaryBanEv.SENT_TOO_MANY_SAME_MESSAGE, Expire=7200), NOW)
    assert "SENT_TOO_MANY_SAME_MESSAGE" in s.detail and "2.0 h" in s.action


@pytest.mark.parametrize("reason, status", [
    (ConnectFailureReason.LOGGED_OUT, "logged_out"),
    (ConnectFailureReason.UNKNOWN_LOGOUT, "logged_out"),
    (ConnectFailureReason.TEMP_BANNED, "temporary_ban"),
    (ConnectFailureReason.CLIENT_OUTDATED, "connect_failed"),
    (ConnectFailureReason.SERVICE_UNAVAILABLE, "connect_failed"),
])
def test_connect_failure_reasons_map_to_the_state_the_user_must_handle(reason, status):
    s = status_for_event(ConnectFailureEv(Reason=reason, Message="refused"), NOW)
    assert s.status == status and s.action


def test_a_degraded_keepalive_is_reported_and_its_recovery_is_connected_again():
    assert status_for_event(KeepAliveTimeoutEv(ErrorCount=3, LastSuccess=0), NOW).status == "disconnected"
    assert status_for_event(KeepAliveRestoredEv(), NOW).status == "connected"
    assert "upgrade" in status_for_event(ClientOutdatedEv(), NOW).action


def test_events_that_are_not_about_the_connection_map_to_nothing(build):
    assert status_for_event(build.message("hi"), NOW) is None


# --- register_handlers, through neonize's dispatcher --------------------------------------------------------

async def test_registered_message_handler_receives_the_real_event(wire, gateway, build):
    await wire.feed(build.message("hello", msg_id="M1"))
    ev = await asyncio.wait_for(gateway.messages.get(), 5)
    assert (ev.Info.ID, ev.Message.conversation) == ("M1", "hello")


async def test_connected_event_reports_connected_and_releases_first_connect(wire, gateway):
    await wire.feed(ConnectedEv(status=True))
    assert (await gateway.next_status()).status == "connected"
    assert gateway.signals.connected.is_set() and wire.client.connected is True


async def test_a_disconnect_is_reported_and_never_triggers_a_second_connect(wire, gateway):
    await wire.feed(ConnectedEv(status=True), DisconnectedEv(status=True), ConnectedEv(status=True))
    assert [(await gateway.next_status()).status for _ in range(3)] == ["connected", "disconnected", "connected"]
    # the fixture's connect() raises if called; reaching here means nobody reconnected by hand


@pytest.mark.parametrize("ev, status", [
    (LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT), "logged_out"),
    (StreamReplacedEv(), "stream_replaced"),
    (TemporaryBanEv(Code=TemporaryBanEv.BLOCKED_BY_USERS, Expire=86400), "temporary_ban"),
    (ConnectFailureEv(Reason=ConnectFailureReason.GENERIC, Message="boom"), "connect_failed"),
], ids=["logged-out", "stream-replaced", "temporary-ban", "connect-failure"])
async def test_terminal_states_arrive_through_the_dispatcher_with_an_action(wire, gateway, ev, status):
    await wire.feed(ev)
    s = await gateway.next_status()
    assert s.status == status and s.action


async def test_a_qr_request_in_the_service_reports_not_paired_once_and_prints_no_qr(wire, gateway, capsys):
    await wire.qr(b"2@abc,def,ghi")
    await wire.qr(b"2@rotated,code")
    s = await gateway.next_status()
    assert (s.status, s.detail) == ("logged_out", "no paired device in /data/whatsapp/session.sqlite3")
    assert "nanoclaw whatsapp pair" in s.action
    assert gateway.signals.blocked.is_set() and gateway.signals.blocking_status == s
    await asyncio.sleep(0.05)
    assert gateway.statuses.empty()
    assert capsys.readouterr().out == ""


async def test_messages_are_handled_one_at_a_time_in_arrival_order(wire, build):
    seen, active, overlap = [], 0, False

    async def slow_handler(ev):
        nonlocal active, overlap
        active += 1
        overlap |= active > 1
        await asyncio.sleep(random.uniform(0, 0.02))
        seen.append(ev.Info.ID)
        active -= 1

    async def on_status(_):
        pass

    register_handlers(wire.client, slow_handler, on_status)
    ids = [f"M{n}" for n in range(8)]
    await wire.feed(*(build.message("x", msg_id=i) for i in ids))
    for _ in range(200):
        if len(seen) == len(ids):
            break
        await asyncio.sleep(0.01)
    assert seen == ids and not overlap


async def test_a_failing_message_handler_is_logged_and_the_next_message_still_arrives(wire, build, caplog):
    seen = []

    async def flaky(ev):
        if ev.Info.ID == "BAD":
            raise ValueError("boom")
        seen.append(ev.Info.ID)

    async def on_status(_):
        pass

    register_handlers(wire.client, flaky, on_status)
    with caplog.at_level(logging.ERROR):
        await wire.feed(build.message("x", msg_id="BAD"), build.message("y", msg_id="GOOD"))
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
    assert seen == ["GOOD"]
    assert "message handler failed for message BAD" in caplog.text


def test_handlers_cannot_be_registered_after_connect(wire):
    wire.client.connect_task = object()  # what connect() leaves behind

    async def noop(_):
        pass

    with pytest.raises(RuntimeError, match="before client.connect"):
        register_handlers(wire.client, noop, noop)
