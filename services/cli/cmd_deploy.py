"""``nanoclaw deploy build``: build (or confirm up to date) the three images of the container deployment:
``nanoclaw-agent`` (the sandbox), ``nanoclaw-service`` (every service) and ``nanoclaw-nats``.

One progress row per image with the latest log line of the running step; then a table of tags, status
(built|cached), sizes and times. Exit 1 with one clear line when a step fails or no engine is reachable.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column

from services.cli.common import ConfigOption, CredentialsOption, console, out, progress_line
from services.cli import output

app = typer.Typer(help="The container deployment (docs/deploy.md).", no_args_is_help=True)


def _builders() -> dict[str, Callable]:
    # Imported here: the rest of the CLI must keep working where docker-py's image machinery is unavailable.
    from deploy.images.nats import build_nats_image
    from deploy.images.service import build_service_image
    from sandbox.image import build_agent_image_result

    return {"agent": build_agent_image_result, "service": build_service_image, "nats": build_nats_image}


@app.command()
def build(base_image: str = typer.Option(None, "--base-image",
                                         help="BASE_IMAGE for all images (default: python:3.11-slim-bookworm, "
                                              "else the local debootstrap base nanoclaw-base:bookworm)"),
          only: list[str] = typer.Option(None, "--only", help="build only these images: agent, service, nats"),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="print every build log line")) -> None:
    """Build the agent, service and NATS images (each a no-op when nothing changed); print tags and sizes."""
    from deploy.images import ImageError, docker_client

    builders = _builders()
    unknown = sorted(set(only or ()) - set(builders))
    if unknown:
        console.print(f"[red]error[/red]: unknown image {', '.join(unknown)}; choose from {', '.join(builders)}")
        raise typer.Exit(2)
    chosen = [name for name in builders if not only or name in only]
    results = []
    with Progress(SpinnerColumn(finished_text="[green]✓[/green]"),
                  TextColumn("{task.fields[image]}", table_column=Column(width=8, no_wrap=True)),
                  TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
                  TimeElapsedColumn(), console=console, expand=True) as bar:
        tasks = {name: bar.add_task("waiting", image=name, total=1, start=False) for name in chosen}
        try:
            client = docker_client()
            for name in chosen:
                bar.start_task(tasks[name])

                def progress(line: str, task=tasks[name]) -> None:
                    if verbose:
                        bar.console.print(line, highlight=False, markup=False)
                    bar.update(task, description=progress_line(line))

                started = time.monotonic()
                result = builders[name](progress, client=client, base_image=base_image)
                results.append((name, result, time.monotonic() - started))
                bar.update(tasks[name], completed=1, description=f"{result.status}: {result.tag}")
        except ImageError as exc:
            bar.stop()
            console.print(f"[red]error[/red]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
    table = output.table("image", "tag", "status", "size", "time")
    for name, result, seconds in results:
        output.add_row(table, name, result.tag, result.status, f"{result.size / 1e6:.0f} MB", f"{seconds:.1f} s")
    output.print_table(out, table)


@app.command()
def streams(replicas: int = typer.Option(None, "--replicas", min=1, max=5,
                                         help="stream replicas (default: nats.stream_replicas)"),
            wait_s: float = typer.Option(120.0, "--wait", help="seconds to keep retrying while NATS comes up"),
            config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Create the event and dead-letter streams as the admin identity (compose runs this once before the
    services, which may only read stream info). Retries until NATS (or a cluster majority) answers."""
    import asyncio

    from events.store.streams import StreamSettings, ensure_streams
    from services.cli.common import load, run
    from services.harness.connect import NatsUnavailable, connect_nats

    settings, creds = load(config, credentials)
    if not settings.nats.urls:
        console.print("[red]configuration error[/red]: nats.urls is empty (set NANOCLAW_NATS__URLS)")
        raise typer.Exit(2)
    wanted = StreamSettings(replicas or settings.nats.stream_replicas, settings.nats.duplicate_window_s)

    async def create() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                nc = await connect_nats(settings.nats.urls, settings.nats, creds, name="nanoclaw-streams",
                                        reconnect=False)
                try:
                    await ensure_streams(nc.jetstream(timeout=10), wanted)
                    return
                finally:
                    await nc.close()
            except Exception as exc:  # noqa: BLE001 — unreachable, or a cluster without a JetStream leader yet
                if loop.time() > deadline:
                    raise NatsUnavailable(f"streams not created within {wait_s:.0f} s: {exc}") from exc
                console.print(f"waiting for NATS: {exc}")
                await asyncio.sleep(2)

    run(create())
    out.print(f"streams ready ({wanted.replicas} replica{'s' if wanted.replicas > 1 else ''})")


@app.command("docker-proxy")
def docker_proxy(host: str = typer.Option("0.0.0.0", "--host", help="address to listen on"),
                 port: int = typer.Option(2375, "--port", min=1, max=65535, help="TCP port to listen on"),
                 socket: Path = typer.Option(Path("/var/run/docker.sock"), "--socket", help="the engine's unix socket"),
                 log_level: str = typer.Option("INFO", "--log-level", help="INFO logs every call, WARNING only denials")
                 ) -> None:
    """The runner's Docker API proxy (docs/deploy.md): forwards only the calls the runner needs and refuses any
    container that is not a hardened sandbox. Policy from the environment: NANOCLAW_DOCKER_PROXY__NETWORK and
    __BIND_ROOTS (required), __IMAGES (default nanoclaw-agent), __RUNTIMES (default runc)."""
    import asyncio
    import os
    import signal

    from deploy.dockerproxy.policy import PolicyConfigError, policy_from_env
    from deploy.dockerproxy.server import serve
    from services.harness.logging import setup_logging

    try:
        policy = policy_from_env(os.environ)
    except PolicyConfigError as exc:
        console.print(f"[red]configuration error[/red]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    setup_logging(log_level.upper())

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a container stop ends the proxy cleanly
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await serve(policy, host, port, str(socket), stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
