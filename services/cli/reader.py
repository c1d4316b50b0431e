"""The read-only ``reader`` identity of a single-machine `nanoclaw up`, for outside tools (docs/events.md,
"Connecting as the reader").

`up`'s embedded server makes fresh passwords for its users on every start (services/harness/natsembedded.py),
except the reader's: an outside subscriber with a durable consumer must be able to reconnect after a restart of
`up` with the credentials it was given. So the reader's password is made once and kept in
``<data_dir>/reader/`` (directory 0700, files 0600):

- ``credentials.yml``: a credentials file (``nats.user``/``nats.password``) for ``nanoclaw --credentials`` and the
  example subscriber (examples/subscriber.py);
- ``password``: the password alone, for shells (``nats --password "$(cat …)"``);
- ``url``: where the running `up` listens (no secret; rewritten at every start).

What the reader may do is services/harness/natsperms.py (``READER``): read ``NC_EVENTS`` and ``NC_DLQ`` (stream
info, direct gets, consumers of its own, acks of its own), never publish an event, never administer a stream.
The container deployment has its own reader key (``nanoclaw init``: ``<dir>/reader.credentials.yml``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml

from deploy.identities import write_secret
from services.harness.natsperms import READER


def reader_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "reader"


def reader_password(data_dir: Path) -> str:
    """The reader's password, made (32 random bytes, URL-safe) and written the first time.

    Raises:
        OSError: the data directory is not writable.
    """
    folder = reader_dir(data_dir)
    path = folder / "password"
    if path.exists():
        password = path.read_text().strip()
        if password:
            return password
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    password = secrets.token_urlsafe(32)
    write_secret(path, password + "\n")
    write_secret(folder / "credentials.yml",
                 "# The read-only reader of `nanoclaw up` (docs/events.md, \"Connecting as the reader\").\n"
                 + yaml.safe_dump({"nats": {"user": READER, "password": password}}))
    return password


def write_reader_url(data_dir: Path, url: str) -> None:
    """Record the running server's plain URL (no credentials) for the reader."""
    folder = reader_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "url").write_text(url + "\n")


def clear_reader_url(data_dir: Path) -> None:
    (reader_dir(data_dir) / "url").unlink(missing_ok=True)
