"""Per-group keys derived from the broker's master key, and what they are used for.

``group_key(master, purpose, folder) = HMAC-SHA256(master, "nanoclaw/ext/<purpose>/v1/<folder>")`` (32 bytes),
for three purposes, so one leaked group key reveals neither the master key nor another group's keys:

- ``sign``: the request signature a provider can verify (:func:`signature`).
- ``audit``: the HMAC of a call's parameters stored in events (:func:`params_hash`). Keyed rather than a plain
  SHA-256 so low-entropy parameters (an issue number, a short token) cannot be found by hashing guesses.
- ``result``: AES-256-GCM sealing of call results stored in events (:func:`seal` / :func:`unseal`): answers
  often echo the parameters (a created issue returns its title and body), so they are never stored in clear.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNATURE_HEADER = "X-Nanoclaw-Signature"
MIN_MASTER_KEY_BYTES = 16


class SealError(Exception):
    """A sealed result cannot be opened (another master key, or the data was altered)."""


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def group_key(master: bytes, purpose: str, folder: str) -> bytes:
    """The 32-byte key of one group for one purpose (``sign``, ``audit`` or ``result``)."""
    return hmac_sha256(master, f"nanoclaw/ext/{purpose}/v1/{folder}".encode())


def canonical(params: dict[str, Any]) -> bytes:
    """Parameters as canonical JSON (sorted keys, no spaces, UTF-8): equal parameters, equal bytes."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def params_hash(master: bytes, folder: str, params: dict[str, Any]) -> str:
    """HMAC-SHA256 (64 hex digits) of the canonical parameters under the group's audit key."""
    return hmac_sha256(group_key(master, "audit", folder), canonical(params)).hex()


def string_to_sign(timestamp: int, folder: str, method: str, host: str, path_qs: str, body: bytes) -> bytes:
    """``v1\\n<unix seconds>\\n<folder>\\n<METHOD>\\n<host[:port]>\\n<path?query>\\n<hex SHA-256 of the body>``."""
    return "\n".join(["v1", str(timestamp), folder, method.upper(), host, path_qs,
                      hashlib.sha256(body).hexdigest()]).encode()


def signature(master: bytes, timestamp: int, folder: str, method: str, host: str, path_qs: str, body: bytes) -> str:
    """The ``X-Nanoclaw-Signature`` header value: ``t=<unix seconds>,g=<folder>,v1=<hex HMAC-SHA256>`` of
    :func:`string_to_sign` under the group's signing key."""
    mac = hmac_sha256(group_key(master, "sign", folder), string_to_sign(timestamp, folder, method, host, path_qs, body))
    return f"t={timestamp},g={folder},v1={mac.hex()}"


def seal(master: bytes, folder: str, key_id: str, plaintext: bytes) -> str:
    """AES-256-GCM under the group's result key, bound to ``key_id`` (associated data), as base64 of
    nonce ‖ ciphertext ‖ tag."""
    nonce = os.urandom(12)
    box = AESGCM(group_key(master, "result", folder)).encrypt(nonce, plaintext, f"{folder}:{key_id}".encode())
    return base64.b64encode(nonce + box).decode()


def unseal(master: bytes, folder: str, key_id: str, sealed: str) -> bytes:
    """Raises: SealError when the data does not open under this master key, folder and key id."""
    try:
        raw = base64.b64decode(sealed, validate=True)
        return AESGCM(group_key(master, "result", folder)).decrypt(raw[:12], raw[12:], f"{folder}:{key_id}".encode())
    except (InvalidTag, ValueError) as exc:
        raise SealError("the stored result cannot be opened with the current master key") from exc
