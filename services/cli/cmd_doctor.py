"""``nanoclaw doctor``: one line per check, exit 1 when a required check fails."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import typer
from nats.js.errors import NotFoundError

from events.subjects import DEAD_LETTER_STREAM, EVENT_STREAM
from services.cli.bus import running_embedded_url
from services.cli.common import ConfigOption, CredentialsOption, load, out
from services.cli.preflight import has_claude_credential, missing_credential
from services.harness.config import Credentials, Settings
from services.harness.connect import NatsUnavailable, connect_nats
from services.harness.natsserver import EmbeddedNats, NatsServerError, find_nats_server


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def doctor(config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Check configuration, the Claude credential, NATS and JetStream, the streams, the data directory and the Docker
    engine."""
    settings, creds = load(config, credentials)
    checks = [Check("config", True, f"valid ({config or os.environ.get('NANOCLAW_CONFIG') or 'config.yml or defaults'})")]
    checks.append(_data_dir(settings))
    checks.append(_credential(settings, creds))
    checks.extend(asyncio.run(_nats_checks(settings, creds)))
    checks.append(_docker())
    for c in checks:
        mark = "[green]✓[/green]" if c.ok else ("[red]✗[/red]" if c.required else "[yellow]![/yellow]")
        out.print(f"{mark} {c.name}: {c.detail}", highlight=False, soft_wrap=True)
    if any(not c.ok and c.required for c in checks):
        raise typer.Exit(1)


def _credential(settings: Settings, creds: Credentials) -> Check:
    """Required only when a service that needs it runs (services/cli/preflight.py); the secret is never shown."""
    if problem := missing_credential(settings.services, creds):
        return Check("Claude credential", False, f"missing: {problem} (`nanoclaw up` refuses to start without it)")
    if not has_claude_credential(creds):
        return Check("Claude credential", True, "not needed (neither runner nor broker is configured here)")
    kind = "anthropic_api_key" if creds.anthropic_api_key else "claude_code_oauth_token"
    return Check("Claude credential", True, f"{kind} is set (checked by the model API at the first call)")


def _data_dir(settings: Settings) -> Check:
    path = Path(settings.data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return Check("data directory", True, f"{path.resolve()} is writable")
    except OSError as exc:
        return Check("data directory", False, f"{path} is not writable: {exc.strerror}")


async def _nats_checks(settings: Settings, creds: Credentials) -> list[Check]:
    checks: list[Check] = []
    urls = settings.nats.urls
    temp_server = None
    if not urls:
        try:
            binary = find_nats_server()
            version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
            checks.append(Check("nats-server binary", True, f"{binary} ({version})"))
        except (NatsServerError, OSError, subprocess.SubprocessError) as exc:
            return checks + [Check("nats-server binary", False, str(exc))]
        running = running_embedded_url(settings)
        if running:
            urls = [running]
        else:
            tmp = tempfile.TemporaryDirectory(prefix="nanoclaw-doctor-")
            try:
                temp_server = EmbeddedNats(Path(tmp.name), sync_always=False).start()
            except NatsServerError as exc:
                tmp.cleanup()
                return checks + [Check("embedded NATS", False, str(exc))]
            urls = [temp_server.url]
            checks.append(Check("embedded NATS", True, "starts with JetStream (not running now: `nanoclaw up` starts it)"))
    try:
        try:
            nc = await connect_nats(urls, settings.nats, creds, name="nanoclaw-doctor", reconnect=False)
        except NatsUnavailable as exc:
            return checks + [Check("NATS reachable", False, str(exc))]
        try:
            checks.append(Check("NATS reachable", True, f"{nc.connected_url.netloc if nc.connected_url else urls[0]} "
                                f"(server {nc.connected_server_version})"))
            js = nc.jetstream(timeout=settings.nats.request_timeout_s)
            try:
                info = await js.account_info()
                checks.append(Check("JetStream", True, f"enabled ({info.streams} streams, {info.storage} bytes stored)"))
            except Exception as exc:  # noqa: BLE001 - any failure here means JetStream is not usable
                checks.append(Check("JetStream", False, f"not available: {exc}"))
                return checks
            if temp_server is None:
                for name in (EVENT_STREAM, DEAD_LETTER_STREAM):
                    checks.append(await _stream(js, name))
        finally:
            await nc.close()
    finally:
        if temp_server is not None:
            temp_server.stop()
    return checks


async def _stream(js, name: str) -> Check:
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return Check(f"stream {name}", False, "missing (services create it at start: run `nanoclaw up`)")
    cfg = info.config
    if not (cfg.deny_delete and cfg.deny_purge) or cfg.allow_rollup_hdrs:
        return Check(f"stream {name}", False, "present but NOT immutable (delete/purge/rollup allowed)")
    return Check(f"stream {name}", True, f"{info.state.messages} messages, replicas {cfg.num_replicas}, delete/purge denied")


def _docker() -> Check:
    import docker
    import requests

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=5)
        version = client.version().get("Version", "?")
        client.close()
        return Check("Docker engine", True, f"reachable at {host} (engine {version})", required=False)
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        return Check("Docker engine", False, f"not reachable at {host}: {exc} (agent runs need it)", required=False)
