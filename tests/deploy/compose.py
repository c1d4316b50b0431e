"""Drive the compose deployment from tests: one labelled compose project per use, torn down (volumes, and the
sandboxes its runner started, too) afterwards; images built once per session with the content-hash cache.

The broker's upstream is a :class:`~tests.stub_anthropic.StubAnthropic` on the host, reached from the broker
container as ``host.docker.internal`` (tests/deploy/compose.stub.yaml adds that name; nothing else changes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from services.harness.natsserver import free_port
from tests.docker_support import agent_image, base_image, docker_client

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose.yaml"
STUB_OVERRIDE = Path(__file__).with_name("compose.stub.yaml")
API_KEY = "sk-ant-compose-test-" + "c" * 24
_images: dict[str, str] = {}


def deploy_images() -> dict[str, str]:
    """``{"service": tag, "nats": tag, "agent": tag}`` of the current sources (built or confirmed once per session)."""
    if not _images:
        from deploy.images import ImageError
        from deploy.images.nats import build_nats_image
        from deploy.images.service import build_service_image

        client = docker_client()
        try:
            _images["service"] = build_service_image(client=client, base_image=_base()).tag
            _images["nats"] = build_nats_image(client=client, base_image=_base()).tag
            _images["agent"] = agent_image()
        except ImageError as exc:
            pytest.fail(f"cannot build the deployment images: {exc}", pytrace=False)
    return _images


def _base() -> str | None:
    # Same rule as the agent image: the default base with fallback, unless an explicit one is configured.
    return os.environ.get("NANOCLAW_BASE_IMAGE") or (base_image() and None)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``nanoclaw …`` on the host (this checkout)."""
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})})


@dataclass
class Deployment:
    """One compose project (``profile`` single|cluster) with its own identities, ports, volumes and sandbox
    network; ``model_port``: the host port of the stub Messages API the broker forwards to."""

    root: Path
    profile: str
    model_port: int
    project: str = field(default_factory=lambda: f"nctest{uuid.uuid4().hex[:8]}")
    nats_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)

    @property
    def sandbox_network(self) -> str:
        return f"{self.project}-sandbox"

    def env(self) -> dict[str, str]:
        images = deploy_images()
        return {**os.environ, "NANOCLAW_SERVICE_IMAGE": images["service"], "NANOCLAW_NATS_IMAGE": images["nats"],
                "NANOCLAW_AGENT_IMAGE": images["agent"], "NANOCLAW_SANDBOX_NETWORK": self.sandbox_network,
                "NANOCLAW_MODEL_UPSTREAM": f"http://host.docker.internal:{self.model_port}", "ANTHROPIC_API_KEY": API_KEY,
                "NANOCLAW_NATS_PORT": str(self.nats_port), "NANOCLAW_HTTP_PORT": str(self.http_port)}

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), "-f", str(STUB_OVERRIDE), "--env-file",
                str(self.root / f"{self.profile}.env"), "--profile", self.profile, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def up(self) -> None:
        result = cli("init", "--dir", str(self.root))
        assert result.returncode == 0, result.stderr
        self.compose("up", "-d")
        self.wait_healthy(["gateway", "router", "queue", "projections", "broker", "docker-proxy", "runner"])

    def down(self) -> None:
        logs = self.compose("logs", "--no-color", "--tail", "300", check=False)
        (self.root / "compose.log").write_text(logs.stdout + logs.stderr)
        # Sandboxes are the runner's, not compose's: any left (an idle run) would keep the networks alive, and
        # compose would then leave them behind (the engine as the test found it: no network of ours left).
        for sandbox in self.sandboxes():
            sandbox.remove(force=True)
        self.compose("down", "-v", "--remove-orphans", "-t", "5", check=False)
        client = docker_client()
        leftover = client.networks.list(names=[self.sandbox_network]) + client.networks.list(
            filters={"label": f"com.docker.compose.project={self.project}"})
        for network in leftover:
            network.remove()

    def sandboxes(self) -> list:
        """The agent containers this deployment's runner started (running or not)."""
        return docker_client().containers.list(all=True, filters={"label": f"nanoclaw.network={self.sandbox_network}"})

    def container(self, service: str):
        found = docker_client().containers.list(all=True, filters={
            "label": [f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
        assert found, f"no container for {service}"
        return found[0]

    def wait_healthy(self, services: list[str], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {}
            for name in services:
                c = self.container(name)
                c.reload()
                states[name] = c.attrs["State"].get("Health", {}).get("Status", c.status)
            if all(s == "healthy" for s in states.values()):
                return
            time.sleep(2)
        logs = self.compose("logs", "--no-color", "--tail", "60", check=False).stdout
        raise AssertionError(f"not healthy within {timeout} s: {states}\n{logs[-6000:]}")

    def admin_env(self) -> dict[str, str]:
        return {"NANOCLAW_NATS__URLS": json.dumps([f"nats://127.0.0.1:{self.nats_port}"]),
                "NANOCLAW_DATA_DIR": str(self.root / "cli-data")}

    def admin(self, *args: str) -> subprocess.CompletedProcess:
        """``nanoclaw --credentials admin.credentials.yml …`` against the published NATS port."""
        return cli(*args[:2], "--credentials", str(self.root / "admin.credentials.yml"), *args[2:], env=self.admin_env())

    def add_group(self, folder: str) -> None:
        """``nanoclaw groups add http:<folder>``: the webhook chat ``folder``, answered without a trigger."""
        result = self.admin("groups", "add", f"http:{folder}", "--name", folder.title(), "--folder", folder,
                            "--no-trigger")
        assert result.returncode == 0, result.stdout + result.stderr

    def _webhook_auth(self) -> dict[str, str]:
        token = dict(line.split("=", 1) for line in (self.root / "env" / "gateway.env").read_text().split())
        return {"Authorization": f"Bearer {token['NANOCLAW_CRED_WEBHOOK_TOKEN']}"}

    def post(self, chat: str, text: str) -> str:
        reply = httpx.post(f"http://127.0.0.1:{self.http_port}/v1/messages", json={"chat": chat, "sender": "ann", "text": text},
                           headers=self._webhook_auth(), timeout=30)
        assert reply.status_code == 202, reply.text
        return reply.json()["id"]

    def replies(self, chat: str, wait: float = 5) -> list[str]:
        """Every message the assistant sent to ``chat`` so far (the webhook channel's long-poll)."""
        reply = httpx.get(f"http://127.0.0.1:{self.http_port}/v1/chats/{chat}/messages", params={"wait": wait},
                          headers=self._webhook_auth(), timeout=wait + 30)
        assert reply.status_code == 200, reply.text
        return [m["text"] for m in reply.json()["messages"]]

    async def wait_replies(self, chat: str, n: int, timeout: float = 180) -> list[str]:
        """Poll :meth:`replies` until there are at least ``n``; fail with the compose logs' tail."""
        import asyncio

        deadline = time.monotonic() + timeout
        found: list[str] = []
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(self.replies, chat, 2)
            if len(found) >= n:
                return found
        logs = self.compose("logs", "--no-color", "--tail", "80", "runner", "broker", check=False).stdout
        raise AssertionError(f"{len(found)} of {n} replies in {chat} within {timeout} s: {found}\n{logs[-8000:]}")


async def events(deployment: Deployment) -> list[tuple[str, dict]]:
    """Every stored event ``(type, data)`` in log order, read as the read-only identity."""
    import nats
    import yaml

    seed = yaml.safe_load((deployment.root / "reader.credentials.yml").read_text())["nats"]
    nc = await nats.connect(f"nats://127.0.0.1:{deployment.nats_port}", nkeys_seed_str=seed["nkey_seed"],
                            inbox_prefix=seed["inbox_prefix"], allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=10)
        last = (await js.stream_info("NC_EVENTS")).state.last_seq
        found = []
        for seq in range(1, last + 1):
            msg = await js.get_msg("NC_EVENTS", seq=seq, direct=True)
            found += [(e["type"].rsplit(".", 1)[-1], e.get("data") or {}) for e in json.loads(msg.data)]
        return found
    finally:
        await nc.close()


async def wait_events(deployment: Deployment, predicate, timeout: float = 120) -> list[tuple[str, dict]]:
    """Poll the log until ``predicate(events)``; fail with the event types seen."""
    import asyncio

    deadline = time.monotonic() + timeout
    seen: list[tuple[str, dict]] = []
    while time.monotonic() < deadline:
        try:
            seen = await events(deployment)
        except Exception:  # noqa: BLE001 — NATS restarting, or a cluster electing a leader: poll again
            pass
        if predicate(seen):
            return seen
        await asyncio.sleep(1)
    raise AssertionError(f"condition not reached within {timeout} s; events: {[t for t, _ in seen]}")


def count(seen: list[tuple[str, dict]], event_type: str, folder: str) -> int:
    return sum(1 for t, d in seen if t == event_type and d.get("group_folder") == folder)
