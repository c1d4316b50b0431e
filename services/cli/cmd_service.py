"""``nanoclaw service``: ``install`` / ``uninstall`` `nanoclaw up` as a service of the logged-in user (systemd user
unit or launchd agent, services/cli/service_unit.py), and ``nanoclaw service NAME`` (= ``service run NAME``) to
run one service, as containers do (deploy/compose.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer
from rich.markup import escape
from typer.core import TyperGroup

from services.cli import cmd_up
from services.cli.common import ConfigOption, CredentialsOption, console, load, out
from services.cli.service_unit import (UnitError, manager_available, manager_commands, render, this_platform,
                                       unit_path, up_spec)


class _ServiceGroup(TyperGroup):
    """``nanoclaw service router`` keeps meaning ``nanoclaw service run router``: a first word that is not a
    subcommand is a service name (no service is called ``install``, ``uninstall`` or ``run``)."""

    def resolve_command(self, ctx: typer.Context, args: list[str]):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(cls=_ServiceGroup, no_args_is_help=True,
                  help="Run one service (`nanoclaw service NAME`), or install `nanoclaw up` as a user service.")
app.command(name="run")(cmd_up.service)

PlatformOption = typer.Option(None, "--platform", help="linux (systemd user unit) or macos (launchd agent); default: this machine")
NameOption = typer.Option("nanoclaw", "--name", help="unit name (several installations need different names)")


def _platform(value: str | None) -> str:
    platform = value or this_platform()
    if platform not in ("linux", "macos"):
        console.print(f"[red]error[/red]: platform {platform!r}: supported are linux (systemd) and macos (launchd)")
        raise typer.Exit(2)
    return platform


@app.command()
def install(config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption,
            platform: str | None = PlatformOption, name: str = NameOption,
            dry_run: bool = typer.Option(False, "--dry-run", help="print the unit file and where it would go; change nothing"),
            start: bool = typer.Option(True, "--start/--no-start", help="load and start it with systemctl/launchctl")) -> None:
    """Write a systemd user unit (Linux) or a launchd agent (macOS) that runs `nanoclaw up` at login and restarts
    it when it fails. Paths are made absolute; run it from the directory you run `nanoclaw up` in."""
    settings, _creds = load(config, credentials)  # refuse a configuration `up` would refuse
    plat = _platform(platform)
    try:
        spec = up_spec(name=name, workdir=Path.cwd(), data_dir=Path(settings.data_dir),
                       config=config or _default("config.yml"), credentials=credentials or _default("credentials.yml"))
        body, path = render(plat, spec), unit_path(plat, name)
    except UnitError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    if dry_run:
        console.print(f"# would write {path}")
        out.print(body.decode(), markup=False, highlight=False, end="", soft_wrap=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body)
    tmp.replace(path)  # never a half-written unit
    console.print(f"wrote {path}")
    _manage(plat, path, name, install=True, run_it=start)


@app.command()
def uninstall(platform: str | None = PlatformOption, name: str = NameOption,
              stop: bool = typer.Option(True, "--stop/--no-stop", help="stop and unload it with systemctl/launchctl first")) -> None:
    """Stop and remove the unit written by `nanoclaw service install`."""
    plat = _platform(platform)
    path = unit_path(plat, name)
    if not path.exists():
        console.print(f"[red]error[/red]: no unit at {path} (nothing installed under the name {name!r})")
        raise typer.Exit(1)
    _manage(plat, path, name, install=False, run_it=stop)
    path.unlink()
    console.print(f"removed {path}")


def _default(filename: str) -> Path | None:
    """The file `up` would read when started from here without options, if it exists (see load_settings)."""
    path = Path(filename)
    return path if path.exists() else None


def _manage(platform: str, path: Path, name: str, *, install: bool, run_it: bool) -> None:
    commands = manager_commands(platform, path, name, install=install)
    if not run_it:
        console.print("not loaded; to do it yourself: " + " && ".join(" ".join(c) for c in commands))
        return
    if not manager_available(platform):
        console.print(f"[yellow]{commands[0][0]} not found[/yellow]; run: " + " && ".join(" ".join(c) for c in commands))
        return
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            console.print(f"[red]error[/red]: {escape(' '.join(command))} failed ({result.returncode}): "
                          f"{escape((result.stderr or result.stdout).strip())}")
            raise typer.Exit(1)
    console.print(f"{'started' if install else 'stopped'} {name}")
