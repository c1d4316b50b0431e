"""``nanoclaw groups add|list|update|remove``: manage registered groups (router.group aggregates)."""

from __future__ import annotations

from pathlib import Path

import typer

from events.catalogue.types import iso_utc
from events.envelope import utcnow
from events.errors import ConcurrencyError
from events.repository import Repository
from projections.chat import RegisteredGroups
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.cli import output
from services.cli.rebuilt import rebuilt_rows
from services.router.folders import InvalidFolder
from services.router.groups import GroupError, RegisteredGroup
from events.catalogue.chat import channel_of
from services.router.trigger import default_trigger

app = typer.Typer(help="Manage the chats the assistant serves.", no_args_is_help=True)


async def current_groups(store) -> list[dict]:
    """Registered groups as rows of the ``registered_groups`` read model, rebuilt from the log."""
    return await rebuilt_rows(store, [RegisteredGroups()], "SELECT * FROM registered_groups ORDER BY folder")


async def register_group(store, *, jid: str, name: str, folder: str, trigger: str, requires_trigger: bool,
                         is_main: bool) -> RegisteredGroup:
    """Register (or reinstate) a group after checking that its folder and the main role are free.

    Raises:
        GroupError / InvalidFolder: the request is invalid (message says why).
        ConcurrencyError: someone changed the group meanwhile.
    """
    others = [g for g in await current_groups(store) if g["jid"] != jid]
    if any(g["folder"] == folder for g in others):
        raise GroupError(f"folder {folder!r} is already used by {next(g['jid'] for g in others if g['folder'] == folder)}")
    if is_main and any(g["is_main"] for g in others):
        raise GroupError(f"there is already a main group ({next(g['jid'] for g in others if g['is_main'])})")
    repo = Repository(store, "cli")
    fields = dict(jid=jid, name=name, folder=folder, trigger=trigger, requires_trigger=requires_trigger, is_main=is_main,
                  channel=channel_of(jid), container_config=None, added_at=iso_utc(utcnow()))
    group = await repo.get(RegisteredGroup, jid)
    if group is None:
        group = RegisteredGroup.register(**fields)
    else:
        group.reinstate(**fields)
    await repo.save(group)
    return group


def _fail(exc: Exception) -> None:
    output.error_line(console, exc)
    raise typer.Exit(2)


@app.command()
def add(jid: str = typer.Argument(..., help="chat JID: 1203…@g.us, 4915…@s.whatsapp.net, http:<chat> or term:<name>"),
        name: str = typer.Option(..., help="display name"),
        folder: str = typer.Option(..., help="group folder ([A-Za-z0-9][A-Za-z0-9_-]{0,63}, not 'global')"),
        trigger: str | None = typer.Option(None, help="trigger word (default @<assistant name>)"),
        no_trigger: bool = typer.Option(False, "--no-trigger", help="answer every message, no trigger needed"),
        main: bool = typer.Option(False, "--main", help="the owner's control group (never needs a trigger)"),
        config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Register a chat as a group."""
    settings, creds = load(config, credentials)

    async def go():
        async with bus(settings, creds, name="nanoclaw-groups") as (_nc, store):
            return await register_group(store, jid=jid, name=name, folder=folder,
                                        trigger=trigger or default_trigger(settings.assistant_name),
                                        requires_trigger=not no_trigger, is_main=main)

    try:
        group = run(go())
    except (GroupError, InvalidFolder, ConcurrencyError) as exc:
        _fail(exc)
    output.say(out, f"registered {group.jid} as {group.folder} (trigger {group.trigger}"
                    f"{', none required' if not group.requires_trigger or group.is_main else ''})")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="NDJSON: one compact object per group per line"),
          config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Show registered groups."""
    settings, creds = load(config, credentials)

    async def go():
        async with bus(settings, creds, name="nanoclaw-groups") as (_nc, store):
            return await current_groups(store)

    rows = run(go())
    if as_json:
        output.print_ndjson({"jid": g["jid"], "name": g["name"], "folder": g["folder"], "trigger": g["trigger_pattern"],
                             "requires_trigger": bool(g["requires_trigger"]), "is_main": bool(g["is_main"]),
                             "added_at": g["added_at"]} for g in rows)
        return
    table = output.table("folder", "jid", "name", "trigger", "needs trigger", "main", "added")
    for g in rows:
        output.add_row(table, g["folder"], g["jid"], g["name"], g["trigger_pattern"], "yes" if g["requires_trigger"] and not g["is_main"] else "no",
                      "yes" if g["is_main"] else "", g["added_at"])
    output.print_table(out, table)


def _change(settings, creds, jid: str, change) -> None:
    """Load the group, apply ``change(group)``, save; exit 2 with the reason when refused."""

    async def go():
        async with bus(settings, creds, name="nanoclaw-groups") as (_nc, store):
            repo = Repository(store, "cli")
            group = await repo.get(RegisteredGroup, jid)
            if group is None:
                raise GroupError(f"{jid} is not registered")
            change(group)
            await repo.save(group)

    try:
        run(go())
    except (GroupError, ConcurrencyError) as exc:
        _fail(exc)


@app.command()
def update(jid: str, name: str | None = typer.Option(None), trigger: str | None = typer.Option(None),
           requires_trigger: bool | None = typer.Option(None, "--requires-trigger/--no-trigger"),
           config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Change a group's name, trigger or trigger requirement."""
    settings, creds = load(config, credentials)
    _change(settings, creds, jid, lambda g: g.update(name=name, trigger=trigger, requires_trigger=requires_trigger))
    output.say(out, f"updated {jid}")


@app.command()
def remove(jid: str, config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Unregister a group (its messages, events and folder are kept)."""
    settings, creds = load(config, credentials)
    _change(settings, creds, jid, lambda g: g.remove())
    output.say(out, f"removed {jid}")
