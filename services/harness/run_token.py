"""Per-run model-proxy tokens: the runner mints one per agent run, the broker's model proxy verifies it.

A token stands in for the API key inside the sandbox (docs/agent-runs.md: the container gets ``model.token``,
never a credential). It names the run and its group and expires; it is signed with a key shared by the runner
and the broker (``run_token_key`` in credentials.yml), so the proxy needs no lookup to trust it.

Format (ASCII, safe in an ``x-api-key`` header)::

    ncrt1.<base64url(JSON {"r": run_id, "g": group_folder, "e": expires_at_s})>.<base64url(HMAC-SHA256)>

The MAC covers everything before the last dot (version prefix included). base64url without padding. The
payload is parsed only after the MAC has been checked, and the check is constant-time
(``cryptography``'s ``HMAC.verify``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

PREFIX = "ncrt1"
MIN_KEY_BYTES = 16

BAD_FORMAT = "bad format"
BAD_SIGNATURE = "bad signature"
EXPIRED = "expired"


class InvalidRunToken(Exception):
    """The token cannot be trusted. ``reason`` is one of ``"bad format"``, ``"bad signature"``, ``"expired"``;
    the message never contains the token itself."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class RunClaims:
    """What a valid token says: the run, its group folder, and when the token stops working (Unix time, s)."""

    run_id: str
    group_folder: str
    expires_at_s: float


def mint(key: bytes, run_id: str, group_folder: str, expires_at_s: float) -> str:
    """Sign a token for ``run_id`` in ``group_folder``, valid until ``expires_at_s`` (Unix time, seconds).

    Raises:
        ValueError: the key is shorter than 16 bytes, or ``expires_at_s`` is not a finite number.
    """
    _check_key(key)
    if not isinstance(expires_at_s, (int, float)) or not math.isfinite(expires_at_s):
        raise ValueError(f"expires_at_s must be a finite number of seconds, got {expires_at_s!r}")
    claims = {"r": run_id, "g": group_folder, "e": float(expires_at_s)}
    signed = f"{PREFIX}.{_b64(json.dumps(claims, separators=(',', ':'), ensure_ascii=True).encode())}"
    return f"{signed}.{_b64(_mac(key, signed.encode()).finalize())}"


def verify(key: bytes, token: str, now_s: float) -> RunClaims:
    """Check a token's signature and expiry at ``now_s`` (Unix time, seconds; injected so tests control time).

    Raises:
        InvalidRunToken: malformed (``bad format``), not signed with ``key`` (``bad signature``), or
            ``now_s >= expires_at_s`` (``expired``).
        ValueError: the key is shorter than 16 bytes (a configuration error, not a bad token).
    """
    _check_key(key)
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        raise InvalidRunToken(BAD_FORMAT, f"expected {PREFIX}.<claims>.<signature>")
    try:
        signature = _unb64(parts[2])
    except ValueError:
        raise InvalidRunToken(BAD_FORMAT, "signature is not base64url") from None
    mac = _mac(key, f"{parts[0]}.{parts[1]}".encode())
    try:
        mac.verify(signature)  # constant-time
    except InvalidSignature:
        raise InvalidRunToken(BAD_SIGNATURE) from None
    claims = _claims(parts[1])
    if now_s >= claims.expires_at_s:
        raise InvalidRunToken(EXPIRED, f"run {claims.run_id} token expired")
    return claims


def _claims(encoded: str) -> RunClaims:
    """Parse an authenticated payload. Only tokens minted by a different version of this code can fail here."""
    try:
        raw = json.loads(_unb64(encoded))
    except (ValueError, UnicodeDecodeError):
        raise InvalidRunToken(BAD_FORMAT, "claims are not base64url JSON") from None
    if not isinstance(raw, dict) or set(raw) != {"r", "g", "e"}:
        raise InvalidRunToken(BAD_FORMAT, "claims must be exactly r, g, e")
    run_id, folder, expires = raw["r"], raw["g"], raw["e"]
    if not isinstance(run_id, str) or not isinstance(folder, str) or isinstance(expires, bool) \
            or not isinstance(expires, (int, float)):
        raise InvalidRunToken(BAD_FORMAT, "claims have the wrong types")
    return RunClaims(run_id, folder, float(expires))


def _mac(key: bytes, data: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the run token key must be at least {MIN_KEY_BYTES} bytes")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict, canonical base64url without padding: a character outside the alphabet is an error (not skipped),
    and so is a non-canonical spelling (unused low bits set), so no two token strings carry the same bytes."""
    if not text.isascii():
        raise ValueError("not ASCII")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data
