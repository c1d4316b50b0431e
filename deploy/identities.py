"""NATS identities of the container deployment: their keys (``Identities``: seeds, which are secret, and public
keys). What each identity may do is services/harness/natsperms.py, shared with `nanoclaw up`.

One nkey user per service, an ``admin`` (the only identity allowed to create, update, delete or purge streams),
a read-only ``reader`` for outside subscribers, and a ``sandbox-auth`` user through which the runner answers the
server's auth callout: sandboxes get a user minted per run in the separate ``SANDBOX`` account
(services/harness/natscallout.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nkeys

from services.harness.natsperms import ADMIN, CALLOUT, READER, SERVICE_ACCESS


def new_seed(prefix: int = nkeys.PREFIX_BYTE_USER) -> str:
    """A fresh nkey seed (``SU…`` for users, ``SA…`` for accounts) from 32 random bytes."""
    return nkeys.encode_seed(os.urandom(32), prefix).decode()


def public_key(seed: str) -> str:
    """The public key (``U…``/``A…``) of a seed. Errors: ``nkeys.ErrInvalidSeed`` for a malformed seed."""
    return nkeys.from_seed(seed.encode()).public_key.decode()


@dataclass
class Identities:
    """Every secret of a deployment. ``seeds`` maps identity name → user seed; ``issuer_seed`` is the account
    key that signs sandbox users; ``js_key`` the JetStream encryption key; ``run_token_key`` is shared by the runner and the broker; ``webhook_token`` is the HTTP
    channel's bearer token (the gateway listens beyond loopback in a container)."""

    seeds: dict[str, str] = field(default_factory=dict)
    issuer_seed: str = ""
    js_key: str = ""
    run_token_key: str = ""
    webhook_token: str = ""

    NAMES = (*SERVICE_ACCESS, ADMIN, READER, CALLOUT)

    @classmethod
    def generate(cls) -> "Identities":
        return cls({name: new_seed() for name in cls.NAMES}, new_seed(nkeys.PREFIX_BYTE_ACCOUNT),
                   os.urandom(32).hex(), os.urandom(32).hex(), os.urandom(24).hex())

    def complete(self) -> "Identities":
        """Add what is missing (a service added since the last ``init``) without touching existing keys."""
        fresh = Identities.generate()
        for name in self.NAMES:
            self.seeds.setdefault(name, fresh.seeds[name])
        for attr in ("issuer_seed", "js_key", "run_token_key", "webhook_token"):
            if not getattr(self, attr):
                setattr(self, attr, getattr(fresh, attr))
        return self

    def public(self, name: str) -> str:
        return public_key(self.seeds[name])

    def save(self, path: Path) -> None:
        """Write as JSON, mode 0600, atomically."""
        write_secret(path, json.dumps({"seeds": self.seeds, "issuer_seed": self.issuer_seed, "js_key": self.js_key,
                                       "run_token_key": self.run_token_key,
                                       "webhook_token": self.webhook_token}, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Identities":
        """Errors: ``ValueError`` naming the file when it is not a valid identities file."""
        try:
            data = json.loads(path.read_text())
            return cls(dict(data["seeds"]), data["issuer_seed"], data["js_key"], data["run_token_key"], data.get("webhook_token", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable identities file ({exc})") from exc


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
