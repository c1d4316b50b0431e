"""``nanoclaw ext grant|approve|revoke|deny|undeny|list|calls``: what each group may do through the
external-access broker (``broker/capability`` aggregates), and the audit trail of its calls.

Level 3 (deploy/merge) follows the two-man rule: ``grant --level 3 --approver alice`` only proposes; a second,
different person approves with ``approve … --approver bob`` (or both are named at once with ``--approver``
twice). Every change is an event, so ``list`` and ``calls`` read projections rebuilt from the log.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Callable, TypeVar

import typer

from events.errors import ConcurrencyError
from events.repository import Repository
from events.store.port import EventStore
from projections.ext import ExtCalls, ExtCapabilities
from services.broker.ext.capability import LEVEL_NAMES, CapabilityError, ExtCapability, check_names
from services.broker.ext.config import ExtConfig
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.cli import output
from services.cli.rebuilt import rebuilt, rebuilt_rows
from services.harness.clock import SystemClock, parse_time

app = typer.Typer(help="Grant, deny and audit agents' external access (GitHub, HTTP APIs).", no_args_is_help=True)
T = TypeVar("T")


async def change(store: EventStore, folder: str, provider: str, apply: Callable[[ExtCapability], T]) -> T:
    """Load (or open) the capability of ``folder`` × ``provider``, apply a command, save it.

    Raises:
        CapabilityError: the command is invalid in the current state (message says why).
        ConcurrencyError: someone changed the same capability meanwhile (run the command again).
    """
    check_names(folder, provider)
    repo = Repository(store, "cli")
    capability = await repo.get(ExtCapability, ExtCapability.create_id(folder, provider))
    capability = capability or ExtCapability.open(folder, provider)
    result = apply(capability)
    await repo.save(capability)
    return result


def grant_status(row: dict, now: datetime) -> str:
    """``proposed``, ``active``, ``expired`` (an active grant past ``expires_at``) or ``revoked``."""
    if row["status"] == "active" and row["expires_at"] and parse_time(row["expires_at"]) <= now:
        return "expired"
    return row["status"]


def _fail(exc: Exception) -> None:
    console.print(f"[red]error[/red]: {exc}")
    raise typer.Exit(2)


def _do(config: Path | None, credentials: Path | None, folder: str, provider: str,
        apply: Callable[[ExtCapability], T]) -> T:
    settings, creds = load(config, credentials)
    try:
        known = ExtConfig.model_validate(settings.broker.get("ext", {})).providers
    except ValueError:
        known = {}
    if provider not in known:
        console.print(f"[yellow]note[/yellow]: provider {provider!r} is not configured in broker.ext.providers")

    async def go():
        async with bus(settings, creds, name="nanoclaw-ext") as (_nc, store):
            return await change(store, folder, provider, apply)

    try:
        return run(go())
    except (CapabilityError, ConcurrencyError) as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


FolderArg = typer.Argument(..., help="group folder")
ProviderArg = typer.Argument(..., help="provider name from broker.ext.providers (e.g. github)")
ProductOption = typer.Option(None, "--product", help="only for this product (default: every product)")
ReasonOption = typer.Option("", "--reason", help="why (kept in the audit trail)")


@app.command()
def grant(folder: str = FolderArg, provider: str = ProviderArg,
          level: int = typer.Option(..., "--level", "-l", help="1 read-only, 2 write (7 days), 3 deploy/merge (7 days, "
                                    "two approvers)"),
          approver: list[str] = typer.Option(..., "--approver", help="who approves; level 3: give it twice, or "
                                             "have a second person run `ext approve`"),
          product: str | None = ProductOption, reason: str = ReasonOption,
          config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Grant a group a level of access to a provider."""
    grant_id = uuid.uuid4().hex[:12]
    g = _do(config, credentials, folder, provider,
            lambda c: c.grant(grant_id=grant_id, level=level, product=product, approvers=approver, reason=reason,
                              now=SystemClock().now()))
    if g.status == "proposed":
        out.print(f"proposed grant {g.grant_id}: level 3 ({LEVEL_NAMES[3]}) for {folder} on {provider}; it needs a "
                  f"second approver: nanoclaw ext approve {folder} {provider} {g.grant_id} --approver <someone else>")
    else:
        out.print(f"granted {g.grant_id}: level {g.level} ({LEVEL_NAMES[g.level]}) for {folder} on {provider}"
                  f"{' for product ' + g.product if g.product else ''}"
                  f"{', until ' + g.expires_at.strftime('%Y-%m-%d %H:%M UTC') if g.expires_at else ''}")


@app.command()
def approve(folder: str = FolderArg, provider: str = ProviderArg, grant_id: str = typer.Argument(..., help="grant id"),
            approver: str = typer.Option(..., "--approver", help="the second approver (not the proposer)"),
            config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Approve a proposed level 3 grant (the two-man rule)."""
    g = _do(config, credentials, folder, provider,
            lambda c: c.approve(grant_id=grant_id, approver=approver, now=SystemClock().now()))
    assert g.expires_at is not None
    out.print(f"granted {g.grant_id}: level 3 for {folder} on {provider} (approved by {', '.join(g.approvers)}), "
              f"until {g.expires_at.strftime('%Y-%m-%d %H:%M UTC')}")


@app.command()
def revoke(folder: str = FolderArg, provider: str = ProviderArg,
           grant_id: str | None = typer.Option(None, "--grant", help="one grant (default: every grant)"),
           by: str = typer.Option(..., "--by", help="who revokes"), reason: str = ReasonOption,
           config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Revoke a group's grants (one, or all) for a provider."""
    ids = _do(config, credentials, folder, provider,
              lambda c: c.revoke(grant_id=grant_id, by=by, reason=reason, now=SystemClock().now()))
    out.print(f"revoked {', '.join(ids)} for {folder} on {provider}")


@app.command()
def deny(folder: str = FolderArg, provider: str = ProviderArg, product: str | None = ProductOption,
         by: str = typer.Option(..., "--by", help="who denies"), reason: str = ReasonOption,
         config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Deny a group a provider (for one product, or for all): wins over every grant until lifted."""
    _do(config, credentials, folder, provider,
        lambda c: c.deny(product=product, by=by, reason=reason, now=SystemClock().now()))
    out.print(f"denied {provider} to {folder}{' for product ' + product if product else ''}")


@app.command()
def undeny(folder: str = FolderArg, provider: str = ProviderArg, product: str | None = ProductOption,
           by: str = typer.Option(..., "--by", help="who lifts the deny"), reason: str = ReasonOption,
           config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Lift a deny."""
    _do(config, credentials, folder, provider,
        lambda c: c.lift_deny(product=product, by=by, reason=reason, now=SystemClock().now()))
    out.print(f"lifted the deny of {provider} for {folder}{' for product ' + product if product else ''}")


@app.command("list")
def list_(group: str | None = typer.Option(None, "--group", help="only this group folder"),
          all_: bool = typer.Option(False, "--all", help="include revoked grants"),
          config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Show grants (with their status now) and denies."""
    settings, creds = load(config, credentials)
    where, params = ("WHERE group_folder = ?", (group,)) if group else ("", ())

    async def go():
        async with bus(settings, creds, name="nanoclaw-ext") as (_nc, store):
            async with rebuilt(store, [ExtCapabilities()]) as rm:  # one replay for both tables
                return ([dict(r) for r in rm.query(f"SELECT * FROM ext_capabilities {where} "
                                                   "ORDER BY group_folder, provider, grant_id", params)],
                        [dict(r) for r in rm.query(f"SELECT * FROM ext_denies {where} "
                                                   "ORDER BY group_folder, provider, product", params)])

    grants, denies = run(go())
    now = SystemClock().now()
    table = output.table("group", "provider", "level", "product", "status", "approvers", "expires", "grant")
    for g in grants:
        status = grant_status(g, now)
        if status == "revoked" and not all_:
            continue
        output.add_row(table, g["group_folder"], g["provider"], f"{g['level']} {LEVEL_NAMES[g['level']]}", g["product"] or "all",
                      status, g["approvers"], g["expires_at"] or "never", g["grant_id"])
    output.print_table(out, table)
    if denies:
        deny_table = output.table("group", "provider", "denied for", "by", "reason", "since", title="denies (win over grants)")
        for d in denies:
            output.add_row(deny_table, d["group_folder"], d["provider"], d["product"] or "all products", d["denied_by"],
                               d["reason"], d["denied_at"])
        output.print_table(out, deny_table)


@app.command()
def calls(group: str | None = typer.Option(None, "--group", help="only this group folder"),
          limit: int = typer.Option(50, "--limit", min=1, help="most recent calls shown"),
          config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Show the audit trail of external calls (parameters appear only as their HMAC)."""
    settings, creds = load(config, credentials)
    where, params = ("WHERE group_folder = ?", (group,)) if group else ("", ())

    async def go():
        async with bus(settings, creds, name="nanoclaw-ext") as (_nc, store):
            return await rebuilt_rows(store, [ExtCalls()], f"SELECT * FROM ext_calls {where} ORDER BY seq DESC LIMIT ?",
                                      (*params, limit))

    table = output.table("at", "group", "provider", "level", "product", "decision", "status", "ms", "key", "params hmac")
    for c in reversed(run(go())):
        status = "" if c["decision"] != "allowed" else str(c["status"]) if c["outcome"] == "ok" else (c["outcome"] or "…")
        output.add_row(table, c["at"], c["group_folder"], c["provider"], str(c["level"]), c["product"] or "", c["decision"],
                      status, "" if c["duration_ms"] is None else str(c["duration_ms"]), c["idempotency_key"],
                      c["params_hash"][:16])
    output.print_table(out, table)
