"""``nanoclaw whatsapp pair [--phone NUMBER]``: link this gateway to a WhatsApp account.

The whatsmeow session lives in one sqlite file (``NewAClient(name)`` *is* the database; stack-notes §1.3).
Pairing is offered only while no device is stored in it: ``PairPhone`` on a restored session ends in a
503 stream error (upstream #175). Without ``--phone`` the QR code is printed in the terminal, as NanoClaw v1
``whatsapp-auth.ts`` did with ``qrcode-terminal``; with ``--phone`` a pairing code is requested from the first
QR callback (whatsmeow: "wait for the QR event before calling PairPhone"; once only, upstream #57).

The gateway service must not run while pairing: two clients on one session database fight over it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from neonize.aioze.events import ConnectedEv, LoggedOutEv, PairStatusEv

from services.gateway.whatsapp.jid import jid_str

if TYPE_CHECKING:
    from collections.abc import Callable

    from neonize.aioze.client import NewAClient

log = logging.getLogger(__name__)

DEFAULT_PAIR_TIMEOUT_SECONDS = 300.0
LINK_MENU = "WhatsApp → Settings → Linked devices → Link a device"
_SEPARATORS = re.compile(r"[\s\-().]")


class PairingError(RuntimeError):
    """Pairing did not complete (bad input, WhatsApp unreachable, refused, or timed out)."""


class AlreadyPaired(PairingError):
    """A device is already stored in the session database; pairing again would break it (upstream #175)."""


def normalize_phone_number(raw: str) -> str:
    """Validate a phone number for ``PairPhone`` and return it as digits with country code, no ``+``.

    Spaces, dashes, dots and parentheses are dropped and one leading ``+`` is accepted, so a number copied
    from a contact card works: ``"+49 151 2345-6789"`` → ``"4915123456789"``.

    Raises:
        PairingError: letters or other symbols, a national number (leading ``0``), or a number that cannot
            exist (fewer than 7 or more than 15 digits, or not a possible number for its country code).
    """
    s = _SEPARATORS.sub("", raw.strip())
    s = s.removeprefix("+")
    example = "e.g. 4915123456789 for +49 151 23456789"
    if not s.isascii() or not s.isdigit():
        raise PairingError(f"{raw!r} is not a phone number: use digits with the country code and no '+', {example}")
    if s.startswith("0"):
        raise PairingError(f"{raw!r} starts with 0: give the international number with the country code, {example}")
    if not 7 <= len(s) <= 15:  # E.164 allows at most 15 digits
        raise PairingError(f"{raw!r} has {len(s)} digits; an international number has 7 to 15, {example}")
    try:
        import phonenumbers  # a neonize dependency, so present wherever pairing can run
    except ImportError:
        return s
    try:
        possible = phonenumbers.is_possible_number(phonenumbers.parse("+" + s))
    except phonenumbers.NumberParseException as exc:
        raise PairingError(f"{raw!r} is not a phone number ({exc}), {example}") from None
    if not possible:
        raise PairingError(f"{raw!r} is not a possible phone number for its country code, {example}")
    return s


def stored_device_jid(db_path: Path) -> str | None:
    """The JID of the device stored in a whatsmeow session database, or ``None`` when nothing is paired.

    ``None`` also when the file does not exist or has no ``whatsmeow_device`` table yet (whatsmeow creates the
    schema on the first connect). The file is opened read-only and never created.

    Raises:
        sqlite3.DatabaseError: the file exists but is not a readable sqlite database.
    """
    db_path = Path(db_path)
    if not db_path.exists():
        return None
    con = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        has_table = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'whatsmeow_device'").fetchone()
        if not has_table:
            return None
        row = con.execute("SELECT jid FROM whatsmeow_device LIMIT 1").fetchone()
        return str(row[0]) if row else None
    finally:
        con.close()


def already_paired_message(db_path: Path, jid: str) -> str:
    return (f"WhatsApp is already paired ({jid}) in {db_path}. Pairing again on a stored session fails. "
            f"To link a different account or re-pair after a logout: stop the gateway, delete {db_path}, "
            f"then run `nanoclaw whatsapp pair` again.")


def render_qr(data: bytes | str, out: TextIO) -> None:
    """Print ``data`` as a QR code made of block characters (segno, installed with neonize)."""
    import segno

    segno.make_qr(data).terminal(out=out, compact=True)


class PairingSession:
    """The event side of one pairing run, attachable to a neonize client (testable with real events).

    ``result`` resolves to the paired JID (``"4915…@s.whatsapp.net"``) once WhatsApp confirmed the pairing
    *and* the client reconnected with the new identity, or fails with :class:`PairingError`.

    Args:
        phone: digits from :func:`normalize_phone_number` to pair by code, or ``None`` for a QR code.
        out: where instructions, the QR code and the pairing code are written.
    """

    def __init__(self, *, phone: str | None, out: TextIO) -> None:
        self.phone = phone
        self.out = out
        self.result: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._code_requested = False
        self._paired_jid: str | None = None

    def attach(self, client: NewAClient) -> None:
        """Register the QR callback and the pairing/connect handlers (before ``client.connect()``)."""
        client.event.qr(self.on_qr)
        client.event(PairStatusEv)(self.on_pair_status)
        client.event(ConnectedEv)(self.on_connected)
        client.event(LoggedOutEv)(self.on_logged_out)

    def _fail(self, message: str) -> None:
        if not self.result.done():
            self.result.set_exception(PairingError(message))

    async def on_qr(self, client: NewAClient, data: bytes) -> None:
        """One call per rotating QR code. QR mode: show each code. Phone mode: request one pairing code."""
        if self.phone is None:
            self.out.write(f"\nScan this QR code in {LINK_MENU} (it changes every ~20 s):\n")
            render_qr(data, self.out)
            self.out.flush()
            return
        if self._code_requested:
            return
        self._code_requested = True
        try:
            code = await client.PairPhone(self.phone, show_push_notification=True)
        except Exception as exc:  # noqa: BLE001 - neonize raises PairPhoneError; any failure ends the run
            self._fail(f"WhatsApp refused a pairing code for {self.phone}: {exc}")
            return
        self.out.write(f"\nOn the phone with number +{self.phone}, open {LINK_MENU} → "
                       f"Link with phone number instead, and enter:\n\n    {code}\n\n")
        self.out.flush()

    async def on_pair_status(self, _client: NewAClient, ev: PairStatusEv) -> None:
        if ev.Status == PairStatusEv.SUCCESS:
            self._paired_jid = jid_str(ev.ID)
            self.out.write(f"Paired as {self._paired_jid}; waiting for WhatsApp to finish the handshake…\n")
            self.out.flush()
        else:
            self._fail(f"pairing failed: {ev.Error or 'WhatsApp reported an error'}")

    async def on_connected(self, _client: NewAClient, _ev: ConnectedEv) -> None:
        # whatsmeow reconnects with the new identity after PairSuccess; only then are the keys in the database.
        if self._paired_jid is not None and not self.result.done():
            self.result.set_result(self._paired_jid)

    async def on_logged_out(self, _client: NewAClient, ev: LoggedOutEv) -> None:
        self._fail("WhatsApp logged this device out during pairing; run the command again")

    async def wait(self, client_task: asyncio.Future) -> str:
        """Wait for :attr:`result`, failing early if the client task ends (e.g. WhatsApp unreachable)."""
        done, _ = await asyncio.wait({self.result, client_task}, return_when=asyncio.FIRST_COMPLETED)
        if self.result in done:
            return self.result.result()
        err = client_task.exception() if not client_task.cancelled() else None
        raise PairingError(f"could not reach WhatsApp: {err or 'the client stopped'}")


async def pair(db_path: Path, *, phone: str | None = None, out: TextIO | None = None,
               timeout: float = DEFAULT_PAIR_TIMEOUT_SECONDS,
               client_factory: Callable[[str], NewAClient] | None = None) -> str:
    """Pair a new device into ``db_path`` and return its JID.

    Args:
        db_path: absolute path of the session database (under the data directory); its parent is created.
        phone: pair by code for this number (validated by :func:`normalize_phone_number`); ``None`` = QR code.
        out: where to print instructions (stdout).
        timeout: seconds to wait for the user to scan or enter the code.
        client_factory: builds the client from the database path (``NewAClient``); for tests.

    Raises:
        ValueError: ``db_path`` is relative (neonize resolves it against the CWD: the session would end up
            wherever the command happened to run).
        AlreadyPaired: a device is already stored (checked before anything connects).
        PairingError: invalid number, WhatsApp unreachable or refusing, or ``timeout``.
    """
    db_path = Path(db_path)
    if not db_path.is_absolute():
        raise ValueError(f"the WhatsApp session database path must be absolute, got {db_path}")
    number = normalize_phone_number(phone) if phone is not None else None
    existing = stored_device_jid(db_path)
    if existing:
        raise AlreadyPaired(already_paired_message(db_path, existing))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if client_factory is None:
        from neonize.aioze.client import NewAClient

        client_factory = NewAClient
    client = client_factory(str(db_path))
    session = PairingSession(phone=number, out=out or sys.stdout)
    session.attach(client)
    task = await client.connect()
    try:
        return await asyncio.wait_for(session.wait(task), timeout)
    except asyncio.TimeoutError:
        raise PairingError(f"no pairing within {timeout:.0f} s; run the command again with the phone at hand"
                           ) from None
    finally:
        await client.stop()  # always: a running Go client keeps the process alive (upstream #173)
