"""``nanoclaw events asyncapi`` and ``nanoclaw events credentials``: the subscriber contract for integrators
(the machine-readable document, and how to connect read-only). Registered on the ``events`` group by
services/cli/main.py."""

from __future__ import annotations

from pathlib import Path

import typer

from events.asyncapi import render
from services.cli.common import ConfigOption, console, load, out
from services.cli.reader import reader_dir
from services.harness.natsperms import READER


def asyncapi(target: Path | None = typer.Option(None, "--out", help="write to this file (default: print it)"),
             check: Path | None = typer.Option(None, "--check", help="exit 1 if this file differs from the models")
             ) -> None:
    """The AsyncAPI 3.0 document of every event subject, generated from the pydantic models (what
    docs/asyncapi.yaml holds)."""
    text = render()
    if check is not None:
        try:
            same = check.read_text(encoding="utf-8") == text
        except OSError as exc:
            console.print(f"[red]error[/red]: cannot read {check}: {exc.strerror}")
            raise typer.Exit(2) from None
        if not same:
            console.print(f"[red]{check} differs from the models[/red]: regenerate it with "
                          f"`nanoclaw events asyncapi --out {check}`")
            raise typer.Exit(1)
        out.print(f"{check} matches the models", markup=False, highlight=False)
        return
    if target is None:
        typer.echo(text, nl=False)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    out.print(f"wrote {target}", markup=False, highlight=False)


def credentials(config: Path | None = ConfigOption) -> None:
    """Where the read-only reader's credentials are, and how to connect with them (never prints the secret).
    Exit 1 when there are none yet (run `nanoclaw up` once, or `nanoclaw init` for the container deployment)."""
    settings, _ = load(config)
    folder = reader_dir(settings.data_dir).resolve()
    deploy = (Path(settings.data_dir) / "deploy" / f"{READER}.credentials.yml").resolve()
    found = False
    if (folder / "password").exists():
        found = True
        url_file = folder / "url"
        url = url_file.read_text().strip() if url_file.exists() else None
        out.print(f"nanoclaw up: read-only user {READER!r}", markup=False, highlight=False)
        out.print(f"  credentials file  {folder / 'credentials.yml'}   (nanoclaw --credentials …, "
                  "examples/subscriber.py --credentials …)", markup=False, highlight=False)
        out.print(f"  password file     {folder / 'password'}", markup=False, highlight=False)
        out.print(f"  server            {url or 'not running (the URL is written to ' + str(url_file) + ' by up)'}",
                  markup=False, highlight=False)
        out.print(f"  nats CLI          nats --server {url or 'nats://127.0.0.1:4222'} --user {READER} "
                  f"--password \"$(cat {folder / 'password'})\" stream info NC_EVENTS", markup=False, highlight=False)
    if deploy.exists():
        found = True
        out.print(f"container deployment: read-only nkey user, credentials file {deploy}", markup=False,
                  highlight=False)
    if not found:
        console.print(f"no reader credentials yet: `nanoclaw up` creates them in {folder}; "
                      f"`nanoclaw init` creates the container deployment's in {deploy.parent}")
        raise typer.Exit(1)
    out.print("It may read NC_EVENTS and NC_DLQ and create consumers of its own; it cannot publish events, ack a "
              "service's messages or change a stream (docs/events.md, \"Connecting as the reader\").",
              markup=False, highlight=False)
