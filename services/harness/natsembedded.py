"""The identities of the embedded nats-server (`nanoclaw up`): the container deployment's layout
(deploy/natsconf.py) with password users instead of nkeys, so a service has the same rights wherever it runs.

- Account ``NC`` (JetStream on): ``admin`` (no permissions block: stream set-up and the CLI), one user per
  service with exactly its own rights (services/harness/natsperms.py), the read-only ``reader``, and
  ``sandbox-auth``, which answers the auth callout.
- Account ``SANDBOX`` (no JetStream, no static users): one user per live run, minted by the auth callout
  (services/harness/natscallout.py) with :func:`services.harness.natsauth.permissions`.

Why the callout and not a user list rewritten per run: with accounts, every configuration reload briefly takes
JetStream away from the account (measured: 4 of 2,000 stream-info calls failed with "no responders" during 29
reloads), and a run would reload twice. The configuration is written once per start and never reloaded.

Sandboxes reach the services only through the service imports between the two accounts (``nc.ipc.>`` towards
the services, ``nc.run.>`` towards sandboxes), with ``share: true`` so the server attests who asked
(``Nats-Request-Info``). A request crossing accounts gets a reply subject the server makes itself (``_R_.…``) and
routes back into the requester's account, so whatever reply subject a sandbox sets, a service's answer never
reaches the event stream, the JetStream API or any subject of the services' account (docs/agent-runs.md,
"Reply subjects").
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Iterable

import nkeys
from pydantic import SecretStr

from services.harness.config import Credentials, NatsCredentials, NatsSettings
from services.harness.natsauth import IPC_PREFIX, RUN_PREFIX, RunIdentity
from services.harness.natscallout import CalloutIssuer
from services.harness.natsperms import (ADMIN, CALLOUT, READER, SANDBOX_ACCOUNT, SERVICE_ACCESS, SERVICES_ACCOUNT,
                                        callout_permissions, inbox_prefix, permissions_for)


class EmbeddedAuth:
    """Passwords (fresh for every start, 32 random bytes each) and the callout's signing key, in memory and in
    ``path`` (mode 0600; the key itself is not in the file, only its public half). Issues run users once
    :meth:`attach` has given it the server's URL.

    Args:
        path: the included file (``auth.conf`` beside the generated server configuration).
        identities: the users of account ``NC`` besides ``admin`` and ``sandbox-auth`` (default: every service
            and the reader).
        kept: passwords that stay the same across starts, by identity (`up` keeps the reader's, which outside
            tools hold: services/cli/reader.py).

    Raises:
        KeyError: ``kept`` names an identity this server does not have.
    """

    def __init__(self, path: Path, identities: Iterable[str] = (*SERVICE_ACCESS, READER),
                 kept: dict[str, str] | None = None):
        self.path = Path(path)
        self.passwords = {name: secrets.token_urlsafe(32) for name in (ADMIN, *identities, CALLOUT)}
        for name, password in (kept or {}).items():
            if name not in self.passwords:
                raise KeyError(f"{name!r} is not an identity of this server")
            self.passwords[name] = password
        self._issuer_seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT).decode()
        self._callout: CalloutIssuer | None = None

    def credentials(self, name: str) -> tuple[str, str, str | None]:
        """``(user, password, inbox prefix)`` of identity ``name`` (the admin uses the default inbox).

        Raises:
            KeyError: ``name`` is not an identity of this server.
        """
        return name, self.passwords[name], None if name == ADMIN else inbox_prefix(name)

    def identity(self, name: str, base: Credentials) -> Credentials:
        """``base`` (the Claude credential, keys…) with identity ``name``'s NATS user, password and inbox prefix,
        for one connection (``admin`` for the host and the CLI; a service's name for its own connection).

        Raises:
            KeyError: ``name`` is not an identity of this server.
        """
        user, password, inbox = self.credentials(name)
        return base.model_copy(update={"nats": NatsCredentials(user=user, password=SecretStr(password),
                                                                inbox_prefix=inbox)})

    def conf_text(self) -> str:
        # JSON strings are valid NATS configuration strings, and quoting every value keeps a password or subject
        # from being read as a number or a variable.
        def user(name: str) -> dict:
            entry: dict = {"user": name, "password": self.passwords[name]}
            if name == CALLOUT:
                entry["permissions"] = callout_permissions()
            elif name != ADMIN:
                entry["permissions"] = permissions_for(name)
            return entry
        users = "\n".join(f"      {json.dumps(user(name))}" for name in self.passwords)
        issuer = nkeys.from_seed(self._issuer_seed.encode()).public_key.decode()
        return f"""accounts {{
  {SERVICES_ACCOUNT} {{
    jetstream: enabled
    users: [
{users}
    ]
    exports: [ {{ service: "{IPC_PREFIX}.>" }} ]
    imports: [ {{ service: {{ account: {SANDBOX_ACCOUNT}, subject: "{RUN_PREFIX}.>" }}, share: true }} ]
  }}
  {SANDBOX_ACCOUNT} {{
    exports: [ {{ service: "{RUN_PREFIX}.>" }} ]
    imports: [ {{ service: {{ account: {SERVICES_ACCOUNT}, subject: "{IPC_PREFIX}.>" }}, share: true }} ]
  }}
}}
authorization {{
  auth_callout {{
    issuer: "{issuer}"
    account: {SERVICES_ACCOUNT}
    auth_users: {json.dumps(list(self.passwords))}
  }}
}}
"""

    def write(self) -> None:
        """Write the file atomically, mode 0600 from the start."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.conf_text())
        os.replace(tmp, self.path)

    def attach(self, url: str) -> None:
        """The server listens at ``url`` (plain, no credentials): run users can be issued from now on."""
        responder = self.identity(CALLOUT, Credentials())
        self._callout = CalloutIssuer([url], NatsSettings(), responder, self._issuer_seed)

    def _issuer(self) -> CalloutIssuer:
        if self._callout is None:
            raise RuntimeError("the embedded server has not started: no run users can be issued yet")
        return self._callout

    async def issue(self, run_id: str, group_folder: str) -> RunIdentity:
        """A user for run ``run_id`` of ``group_folder``; it can connect at once (no reload).

        Raises:
            RuntimeError: the server has not started.
            NatsUnavailable: the callout responder cannot connect.
        """
        return await self._issuer().issue(run_id, group_folder)

    async def revoke(self, run_id: str) -> None:
        await self._issuer().revoke(run_id)

    def live(self, run_id: str) -> RunIdentity | None:
        """The identity issued to live run ``run_id`` (None once revoked): what its sandbox connects with."""
        return self._issuer().live(run_id)

    async def close(self) -> None:
        if self._callout is not None:
            await self._callout.close()
