"""Drive the compose deployment from tests: one labelled compose project per use, torn down (volumes too)
afterwards; images built once per session with the content-hash cache."""

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
from tests.docker_support import base_image, docker_client

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose.yaml"
_images: dict[str, str] = {}


def deploy_images() -> dict[str, str]:
    """``{"service": tag, "nats": tag}`` of the current sources (built or confirmed once per session)."""
    if not _images:
        from deploy.images import ImageError
        from deploy.images.nats import build_nats_image
        from deploy.images.service import build_service_image

        client = docker_client()
        try:
            _images["service"] = build_service_image(client=client, base_image=_base()).tag
            _images["nats"] = build_nats_image(client=client, base_image=_base()).tag
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
    """One compose project (``profile`` single|cluster) with its own identities, ports and volumes."""

    root: Path
    profile: str
    project: str = field(default_factory=lambda: f"nctest{uuid.uuid4().hex[:8]}")
    nats_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)

    def env(self) -> dict[str, str]:
        images = deploy_images()
        return {**os.environ, "NANOCLAW_SERVICE_IMAGE": images["service"], "NANOCLAW_NATS_IMAGE": images["nats"],
                "NANOCLAW_NATS_PORT": str(self.nats_port), "NANOCLAW_HTTP_PORT": str(self.http_port)}

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), "--env-file",
                str(self.root / f"{self.profile}.env"), "--profile", self.profile, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def up(self) -> None:
        result = cli("init", "--dir", str(self.root))
        assert result.returncode == 0, result.stderr
        self.compose("up", "-d")
        self.wait_healthy(["gateway", "router", "queue", "projections"])

    def down(self) -> None:
        logs = self.compose("logs", "--no-color", "--tail", "200", check=False)
        (self.root / "compose.log").write_text(logs.stdout + logs.stderr)
        self.compose("down", "-v", "--remove-orphans", "-t", "5", check=False)

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

    def post(self, chat: str, text: str) -> str:
        token = dict(line.split("=", 1) for line in (self.root / "env" / "gateway.env").read_text().split())
        reply = httpx.post(f"http://127.0.0.1:{self.http_port}/v1/messages", json={"chat": chat, "sender": "ann", "text": text},
                           headers={"Authorization": f"Bearer {token['NANOCLAW_CRED_WEBHOOK_TOKEN']}"}, timeout=30)
        assert reply.status_code == 202, reply.text
        return reply.json()["id"]


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
            seen = seen
        if predicate(seen):
            return seen
        await asyncio.sleep(1)
    raise AssertionError(f"condition not reached within {timeout} s; events: {[t for t, _ in seen]}")


def count(seen: list[tuple[str, dict]], event_type: str, folder: str) -> int:
    return sum(1 for t, d in seen if t == event_type and d.get("group_folder") == folder)
