"""A real nats-server started from the configuration ``nanoclaw init`` generates (no Docker), and clients
connecting as the generated identities."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client

from deploy.identities import Identities
from services.harness.natsperms import inbox_prefix
from deploy.natsconf import KEY_ENV, ServerOptions, accounts_conf, server_conf
from services.harness.config import Credentials, NatsCredentials
from services.harness.natsserver import find_nats_server, free_port


@dataclass
class DeployedNats:
    """One server with the deployment's accounts, permissions, auth callout and encryption at rest."""

    root: Path
    ids: Identities = field(default_factory=Identities.generate)
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "DeployedNats":
        self.port = self.port or free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "accounts.conf").write_text(accounts_conf(self.ids))
        options = ServerOptions(listen=f"127.0.0.1:{self.port}", monitor=f"127.0.0.1:{free_port()}",
                                store_dir=str(self.root / "store"))
        conf = self.root / "server.conf"
        conf.write_text(server_conf(options))
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen([str(find_nats_server()), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, KEY_ENV: self.ids.js_key})
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def credentials(self, name: str) -> Credentials:
        """What ``env/<name>.env`` gives a container."""
        return Credentials(nats=NatsCredentials(nkey_seed=self.ids.seeds[name], inbox_prefix=inbox_prefix(name)))

    async def connect(self, name: str, errors: list | None = None) -> Client:
        """A client as identity ``name``; asynchronous server errors (permission violations) go to ``errors``."""
        async def on_error(exc: Exception) -> None:
            if errors is not None:
                errors.append(str(exc))

        return await nats.connect(self.url, nkeys_seed_str=self.ids.seeds[name], inbox_prefix=inbox_prefix(name),
                                  error_cb=on_error, allow_reconnect=False, connect_timeout=5)
