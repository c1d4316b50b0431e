"""Per-run model-proxy tokens: what the runner mints, the broker verifies; tampering, forgery and expiry fail."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, strategies as st

from services.harness.run_token import BAD_FORMAT, BAD_SIGNATURE, EXPIRED, InvalidRunToken, RunClaims, mint, verify

KEY = b"0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0


def reason(token: str, key: bytes = KEY, now: float = NOW) -> str:
    with pytest.raises(InvalidRunToken) as info:
        verify(key, token, now)
    assert not token or token not in str(info.value)  # the message never echoes the token
    return info.value.reason


def b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_a_minted_token_verifies_to_its_claims_until_it_expires():
    token = mint(KEY, "run-1", "family", NOW + 60)
    assert verify(KEY, token, NOW) == RunClaims("run-1", "family", NOW + 60)
    assert verify(KEY, token, NOW + 59.999).run_id == "run-1"
    assert reason(token, now=NOW + 60) == EXPIRED  # the expiry instant itself is already too late
    assert token.isascii() and " " not in token  # fits an x-api-key header


@pytest.mark.parametrize("part", [0, 1, 2])
def test_changing_any_character_of_any_part_breaks_the_token(part):
    token = mint(KEY, "run-1", "family", NOW + 60)
    parts = token.split(".")
    for i in range(len(parts[part])):
        ch = parts[part][i]
        forged = list(parts)
        forged[part] = parts[part][:i] + ("A" if ch != "A" else "B") + parts[part][i + 1:]
        assert reason(".".join(forged)) in {BAD_FORMAT, BAD_SIGNATURE}, (part, i)


def test_claims_signed_with_another_key_are_a_bad_signature():
    assert reason(mint(b"another key, 16+ bytes long", "run-1", "main", NOW + 60)) == BAD_SIGNATURE


def test_swapping_in_other_claims_keeps_the_old_signature_and_fails():
    prefix, _, sig = mint(KEY, "run-1", "family", NOW + 60).split(".")
    assert reason(f"{prefix}.{b64({'r': 'run-1', 'g': 'main', 'e': NOW + 60})}.{sig}") == BAD_SIGNATURE


@pytest.mark.parametrize("token", ["", "dummy", "sk-ant-api03-xyz", "ncrt1..", "ncrt1.abc", "ncrt2.a.b",
                                   "ncrt1.a.b.c", "ncrt1.ä.b", "ncrt1.abc.!!!"])
def test_malformed_tokens_are_a_bad_format(token):
    assert reason(token) == BAD_FORMAT


def test_a_correctly_signed_payload_with_the_wrong_shape_is_a_bad_format():
    from services.harness.run_token import _b64, _mac

    for claims in ({"r": "x", "g": "y"}, {"r": 1, "g": "y", "e": 5.0}, {"r": "x", "g": "y", "e": True}, [1]):
        signed = f"ncrt1.{b64(claims)}"
        assert reason(f"{signed}.{_b64(_mac(KEY, signed.encode()).finalize())}") == BAD_FORMAT


def test_keys_shorter_than_16_bytes_and_non_finite_expiries_are_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        mint(b"short", "r", "g", NOW)
    with pytest.raises(ValueError, match="16 bytes"):
        verify(b"", "ncrt1.a.b", NOW)
    with pytest.raises(ValueError, match="finite"):
        mint(KEY, "r", "g", float("inf"))


@given(run_id=st.text(), folder=st.text(), expires=st.floats(allow_nan=False, allow_infinity=False),
       key=st.binary(min_size=16, max_size=64))
def test_verify_returns_exactly_what_was_minted(run_id, folder, expires, key):
    token = mint(key, run_id, folder, expires)
    assert verify(key, token, expires - abs(expires) - 1.0) == RunClaims(run_id, folder, expires)
