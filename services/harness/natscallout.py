"""Per-run sandbox identities through the server's auth callout, for the embedded server
(services/harness/natsembedded.py) and an external server or cluster alike.

Why: a separate NATS server (or a 3-node cluster) cannot be reconfigured by the runner, and reloading the
embedded one briefly takes JetStream away from the services' account; so the server asks instead: every connection by a user it does not know is sent, as a signed
authorization request, to ``$SYS.REQ.USER.AUTH``; :class:`CalloutIssuer` (running inside the runner) answers
with a user JWT for the run's user, bound to the ``SANDBOX`` account with exactly the embedded mode's
permissions (:func:`services.harness.natsauth.permissions`), signed by the issuer account key the server
trusts (``auth_callout.issuer``). Unknown users and wrong passwords get an error response: the server refuses
the connection. Revoking a run forgets its password, so it can no longer connect.

JWT shapes: ADR-26 (authorization request/response) and ADR-14 (user claims): ``header.body.signature``,
base64url without padding, ed25519 signature by an nkey over ``header.body``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

import nkeys
from nats.aio.client import Client

from services.harness.config import Credentials, NatsSettings
from services.harness.connect import connect_nats, subscriptions_registered
from services.harness.natsauth import RunIdentity, permissions, run_identity
from services.harness.natsperms import SANDBOX_ACCOUNT

log = logging.getLogger("nanoclaw.natscallout")

AUTH_SUBJECT = "$SYS.REQ.USER.AUTH"
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(claims: dict[str, Any], signer: nkeys.KeyPair) -> str:
    """Sign ``claims`` (``iss`` and ``iat`` are filled in; ``jti`` is the base32 SHA-256 of the body, as the Go
    library computes it) and return the compact JWT."""
    claims = {**claims, "iss": signer.public_key.decode(), "iat": int(time.time()), "jti": ""}
    body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    claims["jti"] = base64.b32encode(hashlib.sha256(body).digest()).decode().rstrip("=")
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
    return f"{signing_input}.{_b64(signer.sign(signing_input.encode()))}"


def decode_jwt(token: str) -> dict[str, Any]:
    """The claims of a compact JWT (the signature is not checked: see :meth:`CalloutIssuer._answer`).

    Errors: ``ValueError`` when ``token`` is not a JWT with a JSON body.
    """
    try:
        return json.loads(_unb64(token.split(".")[1]))
    except (IndexError, ValueError) as exc:
        raise ValueError(f"not a JWT: {exc}") from exc


def user_claims(identity: RunIdentity, user_nkey: str, account: str = SANDBOX_ACCOUNT) -> dict[str, Any]:
    """User JWT claims for one run: bound to ``account`` (config mode: the account *name* is the audience),
    with the run's permissions."""
    perms = permissions(identity)
    return {"sub": user_nkey, "aud": account, "name": identity.user,
            "nats": {"pub": {"allow": perms["publish"]["allow"]}, "sub": {"allow": perms["subscribe"]["allow"]},
                     "resp": {"max": 1, "ttl": 0}, "type": "user", "version": 2}}


class CalloutIssuer:
    """A ``RunIdentityIssuer`` for an external NATS server. Args: ``urls``/``settings``: where the server is;
    ``credentials``: the callout responder's own identity (an nkey user listed in ``auth_callout.auth_users``,
    allowed to subscribe to ``$SYS.REQ.USER.AUTH``); ``issuer_seed``: the account seed (``SA…``) whose public
    key is ``auth_callout.issuer``.

    The responder connects on the first ``issue`` (so the runner's own connection comes first) and stays
    subscribed until :meth:`close`.
    """

    def __init__(self, urls: list[str], settings: NatsSettings, credentials: Credentials, issuer_seed: str) -> None:
        self.urls, self.settings, self.credentials = urls, settings, credentials
        self._signer = nkeys.from_seed(issuer_seed.encode())
        self._runs: dict[str, RunIdentity] = {}  # user name → identity
        self._nc: Client | None = None
        self._lock = asyncio.Lock()

    async def issue(self, run_id: str, group_folder: str) -> RunIdentity:
        await self._ensure_listening()
        identity = run_identity(run_id, group_folder, secrets.token_urlsafe(24))
        self._runs[identity.user] = identity
        return identity

    async def revoke(self, run_id: str) -> None:
        self._runs.pop(run_identity(run_id, "x", "").user, None)

    def live(self, run_id: str) -> RunIdentity | None:
        """The identity issued to run ``run_id`` and not yet revoked."""
        return self._runs.get(run_identity(run_id, "x", "").user)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = None

    async def _ensure_listening(self) -> None:
        async with self._lock:
            if self._nc is not None and not self._nc.is_closed:
                return
            nc = await connect_nats(self.urls, self.settings, self.credentials, name="nanoclaw-sandbox-auth")
            await nc.subscribe(AUTH_SUBJECT, cb=self._on_request)
            await subscriptions_registered(nc)  # the subscription is registered before any sandbox can connect
            self._nc = nc
            log.info("answering the NATS auth callout for sandbox identities")

    async def _on_request(self, msg) -> None:
        try:
            await msg.respond(self._answer(msg.data.decode()).encode())
        except Exception:  # one bad request must not end the subscription
            log.exception("auth callout: cannot answer a request")

    def _answer(self, request_jwt: str) -> str:
        """The signed authorization response for one request. The request's signature is not verified: only
        the server can publish on ``$SYS.REQ.USER.AUTH`` in the callout account, and the answer is useless
        to anyone but the server that asked (its audience and subject are that server and that connection)."""
        request = decode_jwt(request_jwt)["nats"]
        user_nkey, server = request["user_nkey"], request["server_id"]["id"]
        opts = request.get("connect_opts") or request.get("client_opts") or {}
        identity = self._runs.get(str(opts.get("user") or ""))
        response: dict[str, Any] = {"sub": user_nkey, "aud": server,
                                    "nats": {"type": "authorization_response", "version": 2}}
        if identity is None or not hmac.compare_digest(str(opts.get("pass") or ""), identity.password):
            response["nats"]["error"] = "not authorized"
            log.warning("auth callout: refused user %r (unknown run or wrong password)", opts.get("user"))
        else:
            response["nats"]["jwt"] = encode_jwt(user_claims(identity, user_nkey), self._signer)
        return encode_jwt(response, self._signer)


def sandbox_identities(urls: list[str], settings: NatsSettings, credentials: Credentials) -> CalloutIssuer | None:
    """The issuer for ``nanoclaw service runner`` when the credentials hold a sandbox issuer key and the
    callout responder's seed (``nanoclaw init`` writes both); None otherwise."""
    nats = credentials.nats
    if nats.sandbox_issuer_seed is None or nats.callout_seed is None:
        return None
    responder = credentials.model_copy(update={"nats": nats.model_copy(update={
        "nkey_seed": nats.callout_seed, "inbox_prefix": "_INBOX_sandbox_auth", "user": None, "password": None})})
    return CalloutIssuer(urls, settings, responder, nats.sandbox_issuer_seed.get_secret_value())
