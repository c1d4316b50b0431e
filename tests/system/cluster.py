"""The services as separate processes (``nanoclaw service NAME``) against one nats-server with the container
deployment's identities (``nanoclaw init``'s layout: an nkey per service, the sandbox auth callout), a data
directory of their own, the process sandbox backend running :mod:`tests.system.fake_agent`, and the stub model
behind the broker's model proxy. Any service, and the nats-server, can be SIGKILLed and started again.

Layout under ``root``: ``nats/`` (configuration, store, log), ``svc/<name>/`` (each service's data dir:
read models, logs, the runner's group folders), ``svc/<name>.log`` (console output of every start).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import nats
from nats.aio.client import Client

from deploy.identities import Identities
from deploy.natsconf import ServerOptions, accounts_conf, server_conf
from events.store.jetstream import JetStreamEventStore
from events.store.streams import StreamSettings, ensure_streams
from services.harness.natsperms import ADMIN, inbox_prefix
from services.harness.natsserver import find_nats_server, free_port

REPO = Path(__file__).resolve().parents[2]
NANOCLAW = [sys.executable, "-m", "services.cli.main"]
SERVICES = ("gateway", "router", "queue", "runner", "broker", "projections")
"""What the chat path needs (the scheduler and governance have no part in it)."""
FAKE_AGENT = [sys.executable, "-m", "tests.system.fake_agent"]
REAL_KEY = "sk-ant-campaign-key-never-in-a-sandbox"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


@dataclass
class NatsProcess:
    """One nats-server with the deployment's accounts and auth callout; ``sync_interval: always`` (acked means
    fsynced, as the single-node deployment). Restarts keep port, store and keys."""

    root: Path
    ids: Identities
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "accounts.conf").write_text(accounts_conf(self.ids))
        conf = self.root / "server.conf"
        conf.write_text(server_conf(ServerOptions(listen=f"127.0.0.1:{self.port}", monitor=f"127.0.0.1:{free_port()}",
                                                  store_dir=str(self.root / "store"), encrypt=False)))
        with open(self.root / "server.log", "ab") as out:
            self.proc = subprocess.Popen([str(find_nats_server()), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start: {(self.root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Options:
    """What the services are configured with. ``idle_timeout_ms``: the queue's idle close (above the stuck
    threshold, so a turn waiting on it shows as stuck); ``ack_wait_s``: redelivery after a crash."""

    idle_timeout_ms: int = 60_000
    max_concurrent: int = 20
    ack_wait_s: int = 10
    base_retry_ms: int = 1000
    max_retries: int = 5
    log_level: str = "WARNING"


@dataclass
class Cluster:
    root: Path
    stub_url: str
    options: Options = field(default_factory=Options)
    ids: Identities = field(default_factory=Identities.generate)
    http_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.nats = NatsProcess(self.root / "nats", self.ids)

    # --- processes ------------------------------------------------------------------------------------------
    def env(self, name: str) -> dict[str, str]:
        o = self.options
        env = {k: v for k, v in os.environ.items() if not k.startswith("NANOCLAW_")}
        env.update({
            "PYTHONPATH": str(REPO), "NANOCLAW_DATA_DIR": str(self.data_dir(name)), "NANOCLAW_TIMEZONE": "UTC",
            "NANOCLAW_LOG__LEVEL": o.log_level,
            "NANOCLAW_NATS__URLS": json.dumps([self.nats.url]),
            "NANOCLAW_HARNESS": json.dumps({"ack_wait_s": o.ack_wait_s}),
            "NANOCLAW_CHANNELS": json.dumps({"http": {"port": self.http_port}}),
            "NANOCLAW_QUEUE": json.dumps({"max_concurrent": o.max_concurrent, "base_retry_ms": o.base_retry_ms,
                                          "max_retries": o.max_retries, "idle_timeout_ms": o.idle_timeout_ms}),
            "NANOCLAW_RUNNER": json.dumps({"backend": "process",
                                           "model_proxy_url": f"http://127.0.0.1:{self.proxy_port}",
                                           "agent_command": FAKE_AGENT}),
            "NANOCLAW_BROKER": json.dumps({"model_proxy": {"port": self.proxy_port, "upstream_url": self.stub_url}}),
            # What `nanoclaw init` puts in env/<name>.env (services/cli/cmd_init.py).
            "NANOCLAW_CRED_NATS__NKEY_SEED": self.ids.seeds[name],
            "NANOCLAW_CRED_NATS__INBOX_PREFIX": inbox_prefix(name),
        })
        if name in ("runner", "broker"):
            env["NANOCLAW_CRED_RUN_TOKEN_KEY"] = self.ids.run_token_key
        if name == "broker":
            env["NANOCLAW_CRED_ANTHROPIC_API_KEY"] = REAL_KEY
        if name == "runner":
            env["NANOCLAW_CRED_NATS__SANDBOX_ISSUER_SEED"] = self.ids.issuer_seed
            env["NANOCLAW_CRED_NATS__CALLOUT_SEED"] = self.ids.seeds["sandbox-auth"]
        return env

    def data_dir(self, name: str) -> Path:
        return self.root / "svc" / name

    def group_dir(self, folder: str) -> Path:
        return self.data_dir("runner") / "groups" / folder

    def start_service(self, name: str) -> None:
        self.data_dir(name).mkdir(parents=True, exist_ok=True)
        with open(self.root / "svc" / f"{name}.log", "ab") as out:
            out.write(f"--- start {self.starts.get(name, 0) + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.procs[name] = subprocess.Popen(NANOCLAW + ["service", name], cwd=self.data_dir(name), env=self.env(name),
                                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts[name] = self.starts.get(name, 0) + 1

    def kill_service(self, name: str) -> None:
        """SIGKILL, as a crash: the service's agents (process backend, own sessions) are left running, as
        containers would be."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def exited(self) -> dict[str, int]:
        """Services that died on their own (not killed by us): name → exit status."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None and p.returncode != -9}

    async def start(self) -> None:
        self.nats.start()
        nc = await self.admin()
        try:
            await ensure_streams(nc.jetstream(), StreamSettings(1, 600))
        finally:
            await nc.close()
        for name in SERVICES:
            self.start_service(name)
        await self.wait_http()

    async def wait_http(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while True:
                try:
                    async with s.get(f"http://127.0.0.1:{self.http_port}/v1/chats/none/messages",
                                     params={"after": 0, "wait": 0}) as r:
                        if r.status < 500:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the gateway did not answer within {timeout}s; {self.exited()}")
                await asyncio.sleep(0.1)

    def stop_services(self, names: list[str]) -> None:
        """SIGTERM (a clean stop), SIGKILL after 20 s."""
        for name in names:
            if self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)
        for name in names:
            try:
                self.procs[name].wait(20)
            except subprocess.TimeoutExpired:
                self.procs[name].kill()
                self.procs[name].wait()

    def stop(self) -> None:
        self.stop_services(list(reversed(self.procs)))
        self.kill_agents()
        self.nats.stop()

    def kill_agents(self) -> None:
        """Every fake agent still running from this cluster's runner data (orphans of a killed runner)."""
        groups = str(self.data_dir("runner") / "groups")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes()
                if b"tests.system.fake_agent" in args and os.readlink(entry / "cwd").startswith(groups):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass

    # --- the bus ----------------------------------------------------------------------------------------------
    async def admin(self) -> Client:
        return await nats.connect(self.nats.url, nkeys_seed_str=self.ids.seeds[ADMIN], connect_timeout=5,
                                  max_reconnect_attempts=-1, reconnect_time_wait=0.5)

    async def register(self, chats: list[str]) -> None:
        """Register ``http:<chat>`` groups (folder = chat) that need no trigger, as `nanoclaw groups add` does."""
        from services.cli.cmd_groups import register_group
        nc = await self.admin()
        try:
            store = JetStreamEventStore(nc)
            for chat in chats:
                await register_group(store, jid=f"http:{chat}", name=chat, folder=chat, trigger="@Andy",
                                     requires_trigger=False, is_main=False)
        finally:
            await nc.close()

    def audit_verify(self) -> subprocess.CompletedProcess:
        """``nanoclaw audit verify`` against the projector's read model, as the admin."""
        env = self.env("projections")
        env["NANOCLAW_CRED_NATS__NKEY_SEED"] = self.ids.seeds[ADMIN]
        env.pop("NANOCLAW_CRED_NATS__INBOX_PREFIX")
        return subprocess.run(NANOCLAW + ["audit", "verify"], cwd=self.data_dir("projections"), env=env,
                              capture_output=True, text=True, timeout=300)
