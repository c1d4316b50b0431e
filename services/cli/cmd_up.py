"""``nanoclaw up`` (everything in one process with the embedded NATS) and ``nanoclaw service NAME``."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import typer
from pydantic import SecretStr

from events.tasks import cancel_and_wait
from services.cli.bus import nats_store_dir, run_file, write_run_file
from services.cli.cmd_sandbox import build_logged, build_with_progress
from services.cli.preflight import missing_credential
from services.cli.common import ConfigOption, CredentialsOption, config_failure, console, load, run, setup_log, status
from services.cli.registry import builders
from services.harness.config import Credentials, Settings
from services.harness.datalock import UP, DataDirBusy, DataDirLock
from services.harness.host import Host, embedded_host
from services.runner.config import RunnerConfig
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsserver import EmbeddedNats, NatsServerError, free_port, stop_leftover
from services.harness.natscallout import sandbox_identities
from services.harness.natssupervise import supervise
from services.harness.natsperms import READER
from services.cli.reader import clear_reader_url, reader_dir, reader_password, write_reader_url


def up(config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption,
       port: int = typer.Option(4222, help="embedded NATS client port (a free one if taken)")) -> None:
    """Run every service in this process; with no NATS URL configured, start the embedded nats-server."""
    settings, creds = load(config, credentials)
    available = builders()
    unknown = [s for s in settings.services if s not in available]
    if unknown:
        config_failure([f"services: unknown {', '.join(unknown)}; available: {', '.join(sorted(available))}"])
    if problem := missing_credential(settings.services, creds):  # before anything starts or is written
        console.print(f"[red]error[/red]: {problem}", soft_wrap=True)
        raise typer.Exit(2)
    # One `up` per data directory, taken before anything is written (logs, image, configuration, run file).
    try:
        lock = DataDirLock(settings.data_dir).acquire(UP)
    except DataDirBusy as exc:
        console.print(f"[red]error[/red]: {exc}; stop it first, or give this one another data_dir")
        raise typer.Exit(1) from None
    with lock:
        setup_log(settings, to_file=True)
        _up(settings, creds, {name: available[name] for name in settings.services}, port)


def _up(settings: Settings, creds: Credentials, chosen: dict, port: int) -> None:
    if "runner" in chosen:
        _ensure_sandbox_image(settings)
    if creds.run_token_key is None:
        # The runner mints and the broker checks per-run model-proxy tokens; in one process a fresh key per
        # start is enough (separate processes share the one in credentials.yml).
        creds = creds.model_copy(update={"run_token_key": SecretStr(secrets.token_urlsafe(32))})
    server = None
    if settings.nats.urls:
        host = Host(settings, creds, chosen, settings.nats.urls)
    else:
        try:
            # We own the data directory: a nats-server still running on its store was left by a crashed `up`.
            stop_leftover(nats_store_dir(settings))
            # Clients authenticate: every service as its own least-privilege user, sandboxes each as a user of the
            # separate SANDBOX account confined to its own group (services/harness/natsauth.py).
            # The read-only reader keeps its password across starts: outside subscribers hold it (docs/events.md).
            auth = EmbeddedAuth(nats_store_dir(settings) / "auth.conf",
                                kept={READER: reader_password(settings.data_dir)})
            server = EmbeddedNats(nats_store_dir(settings), port=_port(port), sync_always=settings.nats.sync_always,
                                  auth=auth).start()
        except NatsServerError as exc:
            console.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(1) from None
        host = embedded_host(settings, creds, chosen, server)
        write_run_file(settings, server.admin_url)
        write_reader_url(settings.data_dir, server.url)
        status(f"embedded NATS at {server.url} (JetStream in {nats_store_dir(settings)}); outside tools: "
               f"read-only user {READER!r}, credentials in {reader_dir(settings.data_dir)} "
               "(`nanoclaw events credentials`)", nats=server.url)
    status(f"NanoClaw Bus up: services {', '.join(chosen)}; logs in {Path(settings.data_dir) / 'logs'}; Ctrl+C stops",
           services=list(chosen))
    try:
        run(_serve(host, server))
    finally:
        if server is not None:
            run_file(settings).unlink(missing_ok=True)
            clear_reader_url(settings.data_dir)
            server.stop()
        status("NanoClaw Bus stopped")


async def _serve(host: Host, server: EmbeddedNats | None) -> None:
    """The host until signalled, with the embedded server (if any) restarted whenever it dies."""
    supervisor = asyncio.create_task(supervise(server), name="nats-supervisor") if server else None
    try:
        await host.run_until_signalled()
    finally:
        if supervisor is not None:
            await cancel_and_wait([supervisor])


def service(name: str = typer.Argument(..., help="service to run"),
            config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Run one service (for containers); NATS URLs come from config or NANOCLAW_NATS__URLS."""
    settings, creds = load(config, credentials, log_to_file=True)
    available = builders()
    if name not in available:
        console.print(f"[red]error[/red]: unknown service {name!r}; available: {', '.join(sorted(available))}")
        raise typer.Exit(2)
    if not settings.nats.urls:
        console.print("[red]configuration error[/red]: nats.urls is empty; a single service needs a NATS server "
                      "(set NANOCLAW_NATS__URLS='[\"nats://host:4222\"]', or use `nanoclaw up`)")
        raise typer.Exit(2)
    if name == "broker" and (problem := missing_credential([name], creds)):
        console.print(f"[red]error[/red]: {problem}", soft_wrap=True)
        raise typer.Exit(2)
    # External NATS: sandbox users come from the server's auth callout, answered by the runner (docs/deploy.md).
    identities = sandbox_identities(settings.nats.urls, settings.nats, creds) if name == "runner" else None
    run(Host(settings, creds, {name: available[name]}, settings.nats.urls,
             run_identities=identities).run_until_signalled())


def _ensure_sandbox_image(settings) -> None:
    """The default Docker sandbox image is built (or confirmed current: a content-hash no-op) before the
    runner starts, so a fresh machine needs nothing but `nanoclaw up`. A custom image is the user's."""
    config = RunnerConfig.model_validate(settings.runner)
    if config.backend == "docker" and config.image == RunnerConfig().image:
        status("checking the agent sandbox image (the first build takes a few minutes)…")
        build_with_progress() if console.is_terminal else build_logged()


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()
