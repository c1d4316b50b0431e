"""``nanoclaw doctor``: one line per check, exit 1 when a required check fails."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import typer
from nats.js.errors import NotFoundError
from pydantic import BaseModel, SecretStr
from rich.markup import escape

from events.subjects import DEAD_LETTER_STREAM, EVENT_STREAM
from services.cli.bus import running_embedded_url
from services.cli.common import ConfigOption, CredentialsOption, load, out
from services.cli.doctor_credential import check_credential
from services.cli.preflight import has_claude_credential, missing_credential
from services.harness.config import Credentials, Settings, settings_path
from services.harness.connect import NatsUnavailable, connect_nats
from services.harness.natsserver import EmbeddedNats, NatsServerError, find_nats_server


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def doctor(config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Check configuration (every section), the bus (NATS, JetStream, the streams), the Claude credential against
    the model upstream, the data directory and the Docker engine. Never prints a secret."""
    settings, creds = load(config, credentials)  # exits 2 naming each bad key, as `up` does
    checks = [Check("config", True, f"valid, every section ({settings_path(config) or 'defaults and environment'})")]
    checks.append(_data_dir(settings))
    checks.extend(asyncio.run(_nats_checks(settings, creds)))
    checks.append(_credential(settings, creds))
    checks.append(_docker())
    secrets = _secrets(creds)
    for c in checks:
        mark = "[green]✓[/green]" if c.ok else ("[red]✗[/red]" if c.required else "[yellow]![/yellow]")
        out.print(f"{mark} {escape(c.name)}: {escape(_scrub(c.detail, secrets))}", highlight=False, emoji=False,
                  soft_wrap=True)
    if any(not c.ok and c.required for c in checks):
        raise typer.Exit(1)


def _credential(settings: Settings, creds: Credentials) -> Check:
    """Required when a service that needs it runs (services/cli/preflight.py); when set, asked of the model
    upstream (services/cli/doctor_credential.py). The secret is never shown."""
    if problem := missing_credential(settings.services, creds):
        return Check("Claude credential", False, f"missing: {problem} (`nanoclaw up` refuses to start without it)")
    if not has_claude_credential(creds):
        return Check("Claude credential", True, "not needed (neither runner nor broker is configured here)")
    result = asyncio.run(check_credential(settings, creds))
    return Check("Claude credential", result.ok, result.detail, result.required)


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
            checks.append(Check("bus", True, f"running (`nanoclaw up` on {Path(settings.data_dir).resolve()})"))
        else:
            # Say so plainly: what follows is a probe of a throw-away server, not of the bus (whose streams and
            # counts would otherwise read as "0 streams", as if the log were empty).
            checks.append(Check("bus", False, f"NOT running: no `nanoclaw up` on {Path(settings.data_dir).resolve()} "
                                "(start it with `nanoclaw up`); checked a temporary embedded server instead",
                                required=False))
            tmp = tempfile.TemporaryDirectory(prefix="nanoclaw-doctor-")
            try:
                temp_server = EmbeddedNats(Path(tmp.name), sync_always=False).start()
            except NatsServerError as exc:
                tmp.cleanup()
                return checks + [Check("embedded NATS", False, str(exc))]
            urls = [temp_server.url]
    try:
        try:
            nc = await connect_nats(urls, settings.nats, creds, name="nanoclaw-doctor", reconnect=False)
        except NatsUnavailable as exc:
            return checks + [Check("NATS reachable", False, f"{exc}; the bus is down or unreachable")]
        try:
            if temp_server is None:
                checks.append(Check("NATS reachable", True, f"{_server_address(nc, urls[0])} (server {_version(nc)})"))
            js = nc.jetstream(timeout=settings.nats.request_timeout_s)
            try:
                info = await js.account_info()
            except Exception as exc:  # noqa: BLE001 - any failure here means JetStream is not usable
                checks.append(Check("JetStream", False, f"not available: {exc}"))
                return checks
            if temp_server is not None:
                checks.append(Check("embedded NATS", True, f"starts with JetStream (server {_version(nc)}); "
                                    "`nanoclaw up` runs it on the data directory"))
            else:
                checks.append(Check("JetStream", True, f"enabled ({info.streams} streams, {info.storage} bytes stored)"))
                for name in (EVENT_STREAM, DEAD_LETTER_STREAM):
                    checks.append(await _stream(js, name))
        finally:
            await nc.close()
    finally:
        if temp_server is not None:
            temp_server.stop()
    return checks


def _version(nc) -> str:
    v = nc.connected_server_version
    return f"{v.major}.{v.minor}.{v.patch}"


def _server_address(nc, fallback_url: str) -> str:
    """``host:port`` of the server connected to, never the URL's user or password (the embedded server's URL
    carries the admin's)."""
    parsed = nc.connected_url or urlparse(fallback_url)
    return f"{parsed.hostname}:{parsed.port}"


def _secrets(creds: Credentials) -> list[str]:
    """Every secret value of the credentials (to scrub from any text doctor prints)."""
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, SecretStr):
            if value.get_secret_value():
                found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(creds)
    return found


def _scrub(text: str, secrets: list[str]) -> str:
    """``text`` with URL passwords and any secret value replaced by ``***``."""
    text = re.sub(r"(\w+://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


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
