"""`nanoclaw up` as a real subprocess (process backend: no Docker image) on its own data directory and free ports,
for the tests about processes: the data-directory lock, the embedded nats-server's life and its supervision."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from services.harness.natsserver import CONF_FILE, free_port
from tests.agent_path import REAL_KEY

NANOCLAW = [sys.executable, "-m", "services.cli.main"]
REPO = Path(__file__).resolve().parents[2]


def servers_on(store: Path) -> list[int]:
    """The pids of every live nats-server started with ``store``'s configuration (a relative ``-c`` path resolved
    against the process's working directory)."""
    conf = (store / CONF_FILE).resolve()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"-c" in args[:-1] and (Path(os.readlink(entry / "cwd")) / os.fsdecode(args[args.index(b"-c") + 1])) == conf:
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)


@dataclass
class Up:
    """``Up(tmp_path, stub_url).start()`` … ``stop()``; the same ``tmp_path`` means the same data directory."""

    tmp_path: Path
    stub_url: str
    http_port: int = field(default_factory=free_port)
    status_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    stderr_file: Path | None = None

    @property
    def data(self) -> Path:
        return self.tmp_path / "data"

    @property
    def store(self) -> Path:
        return self.data / "nats"

    @property
    def run_file(self) -> Path:
        return self.data / "run" / "nats.url"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "NANOCLAW_TIMEZONE": "UTC",
                "NANOCLAW_NATS__SYNC_ALWAYS": "false",
                "NANOCLAW_HARNESS__STATUS_PORT": str(self.status_port),
                "NANOCLAW_CHANNELS": json.dumps({"http": {"port": self.http_port}}),
                # idle_timeout_ms 0: the queue closes a run once it has answered, so no run is live between a
                # test's steps.
                "NANOCLAW_QUEUE": json.dumps({"idle_timeout_ms": 0}),
                "NANOCLAW_RUNNER": json.dumps({"backend": "process",
                                               "model_proxy_url": f"http://127.0.0.1:{self.proxy_port}"}),
                "NANOCLAW_BROKER": json.dumps({"model_proxy": {"port": self.proxy_port, "upstream_url": self.stub_url}}),
                "NANOCLAW_CRED_ANTHROPIC_API_KEY": REAL_KEY}

    def start(self) -> "Up":
        """Start and wait until `/readyz` answers 200."""
        # The console output goes to a file: a pipe nobody reads fills up and blocks `up` on its next log line.
        self.stderr_file = self.tmp_path / f"up-{self.status_port}.stderr"
        with open(self.stderr_file, "w") as err:
            self.proc = subprocess.Popen(NANOCLAW + ["up", "--port", "0"], cwd=self.tmp_path, env=self.env(),
                                         stdout=subprocess.DEVNULL, stderr=err)
        wait_until(lambda: self.proc.poll() is not None or self.readyz() == 200, 60, "up ready")
        assert self.proc.poll() is None, self.stderr_file.read_text()
        return self

    def readyz(self) -> int | None:
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/readyz", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    async def areadyz(self) -> int | None:
        try:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.status_port}/readyz") as r:
                return r.status
        except aiohttp.ClientError:
            return None

    def server_pid(self) -> int:
        """The one nats-server on this data directory's store."""
        pids = servers_on(self.store)
        assert len(pids) == 1, f"nats-servers on {self.store}: {pids}"
        return pids[0]

    def admin_url(self) -> str:
        return self.run_file.read_text().strip()

    def stop(self) -> str:
        """SIGINT (Ctrl+C), wait, and return the console output; whatever happens, no process of this `up` is left."""
        if self.proc is None:
            return ""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
            return self.stderr_file.read_text()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pid in servers_on(self.store):
                os.kill(pid, signal.SIGKILL)
