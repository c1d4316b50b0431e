"""`nanoclaw whatsapp pair`: input checks, the "already paired?" decision, and the pairing event flow
driven through neonize's own QR callback and dispatcher (stack-notes §1.3, #175, #57)."""

from __future__ import annotations

import asyncio
import io
import sqlite3

import pytest
from neonize.aioze.events import ConnectedEv, PairStatusEv
from neonize.exc import NeonizeError, PairPhoneError
from neonize.proto.Neonize_pb2 import JID

from services.gateway.whatsapp.pairing import (
    AlreadyPaired,
    PairingError,
    PairingSession,
    normalize_phone_number,
    pair,
    stored_device_jid,
)


def whatsmeow_db(path, *jids: str):
    """A session database with whatsmeow's device table (the columns pairing reads)."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY, registration_id BIGINT)")
    con.executemany("INSERT INTO whatsmeow_device VALUES (?, 1)", [(j,) for j in jids])
    con.commit()
    con.close()
    return path


# --- phone number ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, digits", [
    ("4915123456789", "4915123456789"),
    ("+49 151 2345-6789", "4915123456789"),
    ("1 (415) 555-2671", "14155552671"),
])
def test_a_phone_number_becomes_digits_with_country_code_and_no_plus(raw, digits):
    assert normalize_phone_number(raw) == digits


@pytest.mark.parametrize("raw, why", [
    ("015123456789", "starts with 0"),
    ("0049151234567", "starts with 0"),
    ("49151abc4567", "not a phone number"),
    ("", "not a phone number"),
    ("123456", "6 digits"),
    ("1234567890123456", "16 digits"),
    ("4912", "4 digits"),
])
def test_a_bad_phone_number_is_refused_with_an_explanation(raw, why):
    with pytest.raises(PairingError, match=why):
        normalize_phone_number(raw)


# --- already paired? ---------------------------------------------------------------------------------------

def test_no_session_file_means_not_paired_and_no_file_is_created(tmp_path):
    db = tmp_path / "session.sqlite3"
    assert stored_device_jid(db) is None
    assert not db.exists()


def test_a_session_file_without_whatsmeow_tables_is_not_paired(tmp_path):
    db = tmp_path / "session.sqlite3"
    sqlite3.connect(db).close()
    assert stored_device_jid(db) is None


def test_an_empty_device_table_is_not_paired(tmp_path):
    assert stored_device_jid(whatsmeow_db(tmp_path / "s.sqlite3")) is None


def test_a_stored_device_is_reported_with_its_jid(tmp_path):
    db = whatsmeow_db(tmp_path / "s.sqlite3", "4915123456789.0:12@s.whatsapp.net")
    assert stored_device_jid(db) == "4915123456789.0:12@s.whatsapp.net"


async def test_pairing_is_refused_when_a_device_is_already_stored_before_any_client_exists(tmp_path):
    db = whatsmeow_db(tmp_path / "s.sqlite3", "4915123456789:12@s.whatsapp.net")

    def factory(_name):
        raise AssertionError("no client may be built when a device is stored")

    with pytest.raises(AlreadyPaired) as info:
        await pair(db, client_factory=factory)
    assert str(db) in str(info.value) and "delete" in str(info.value)


async def test_the_session_path_must_be_absolute():
    with pytest.raises(ValueError, match="absolute"):
        await pair("data/whatsapp.sqlite3")


async def test_a_bad_phone_number_is_refused_before_connecting(tmp_path):
    def factory(_name):
        raise AssertionError("no client may be built for a bad number")

    with pytest.raises(PairingError, match="starts with 0"):
        await pair(tmp_path / "s.sqlite3", phone="0151 2345678", client_factory=factory)


# --- the event flow, through neonize's QR callback and dispatcher ------------------------------------------

def success(user="4915123456789", server="s.whatsapp.net"):
    return PairStatusEv(ID=JID(User=user, Server=server), Status=PairStatusEv.SUCCESS)


async def test_qr_mode_prints_every_rotating_qr_code_with_instructions(wire):
    out = io.StringIO()
    PairingSession(phone=None, out=out).attach(wire.client)
    await wire.qr(b"2@first,code")
    await wire.qr(b"2@second,code")
    await asyncio.sleep(0.05)
    text = out.getvalue()
    assert text.count("Scan this QR code in WhatsApp → Settings → Linked devices") == 2
    assert "█" in text or "▀" in text or "▄" in text


async def test_phone_mode_requests_one_pairing_code_from_the_first_qr_callback_and_prints_it(wire):
    requested = []

    async def pair_phone(phone, show_push_notification):
        requested.append((phone, show_push_notification))
        return "ABCD-EFGH"

    wire.client.PairPhone = pair_phone
    out = io.StringIO()
    PairingSession(phone="4915123456789", out=out).attach(wire.client)
    await wire.qr(b"2@first,code")
    await wire.qr(b"2@second,code")
    await asyncio.sleep(0.05)
    assert requested == [("4915123456789", True)]
    assert "ABCD-EFGH" in out.getvalue() and "Link with phone number" in out.getvalue()
    assert "Scan this QR" not in out.getvalue()


async def test_a_refused_pairing_code_fails_the_session(wire):
    async def pair_phone(phone, show_push_notification):
        raise PairPhoneError("rate-overlimit")

    wire.client.PairPhone = pair_phone
    session = PairingSession(phone="4915123456789", out=io.StringIO())
    session.attach(wire.client)
    await wire.qr(b"2@first,code")
    with pytest.raises(PairingError, match="rate-overlimit"):
        await asyncio.wait_for(session.result, 5)


async def test_pairing_completes_once_whatsapp_confirms_and_the_client_reconnects(wire):
    session = PairingSession(phone=None, out=io.StringIO())
    session.attach(wire.client)
    await wire.feed(success())
    await asyncio.sleep(0.05)
    assert not session.result.done()  # keys are stored only after the reconnect
    await wire.feed(ConnectedEv(status=True))
    assert await asyncio.wait_for(session.result, 5) == "4915123456789@s.whatsapp.net"


async def test_a_pairing_error_from_whatsapp_fails_the_session(wire):
    session = PairingSession(phone=None, out=io.StringIO())
    session.attach(wire.client)
    await wire.feed(PairStatusEv(ID=JID(), Status=PairStatusEv.ERROR, Error="companion limit reached"))
    with pytest.raises(PairingError, match="companion limit reached"):
        await asyncio.wait_for(session.result, 5)


async def test_pair_reports_an_unreachable_whatsapp_and_always_stops_the_client(wire, tmp_path):
    stopped = []

    async def connect():
        async def dial():
            raise NeonizeError("failed to dial whatsapp web websocket")
        return asyncio.get_running_loop().create_task(dial())

    async def stop():
        stopped.append(True)

    wire.client.connect, wire.client.stop = connect, stop
    with pytest.raises(PairingError, match="could not reach WhatsApp: failed to dial"):
        await pair(tmp_path / "data" / "s.sqlite3", out=io.StringIO(), client_factory=lambda _n: wire.client)
    assert stopped == [True]


async def test_pair_end_to_end_with_events_from_the_dispatcher(wire, tmp_path):
    """connect() is replaced (nothing dials out); everything after it is neonize's real event path."""
    out, stopped = io.StringIO(), []

    tasks = []

    async def connect():
        async def go_side():
            await wire.qr(b"2@first,code")
            await wire.feed(success(), ConnectedEv(status=True))
            await asyncio.sleep(3600)  # the Go client keeps running until stop()
        tasks.append(asyncio.get_running_loop().create_task(go_side()))
        return tasks[0]

    async def stop():
        stopped.append(True)
        tasks[0].cancel()

    wire.client.connect, wire.client.stop = connect, stop
    db = tmp_path / "data" / "s.sqlite3"
    jid = await pair(db, out=out, timeout=10, client_factory=lambda name: wire.client)
    assert jid == "4915123456789@s.whatsapp.net"
    assert stopped == [True] and db.parent.is_dir()
    assert "Scan this QR code" in out.getvalue() and "Paired as 4915123456789@s.whatsapp.net" in out.getvalue()


async def test_pair_times_out_when_nobody_scans(wire, tmp_path):
    tasks = []

    async def connect():
        tasks.append(asyncio.get_running_loop().create_task(asyncio.sleep(3600)))
        return tasks[0]

    async def stop():
        tasks[0].cancel()

    wire.client.connect, wire.client.stop = connect, stop
    with pytest.raises(PairingError, match="no pairing within"):
        await pair(tmp_path / "s.sqlite3", out=io.StringIO(), timeout=0.05, client_factory=lambda _n: wire.client)
