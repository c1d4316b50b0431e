"""``nanoclaw gov …``: products, governance tasks, approvals and roles (docs/governance.md).

Writes go through the event store (the same commands the agents' ``gov_*`` tools use, saved with optimistic
concurrency); reads rebuild the governance projections in memory from the log. The person at the terminal is
the operator (every role, ``person:<name>`` in the audit trail, ``--as`` or $USER), and is still bound by the
state machine, strict mode and separation of powers: whoever executed a task cannot approve it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import typer
from pydantic import ValidationError

from events.errors import ConcurrencyError
from events.repository import Repository
from projections.chat import RegisteredGroups, group_refs
from projections.governance import governance_projections
from services.cli.bus import bus
from services.cli.common import ConfigOption, CredentialsOption, console, load, out, run
from services.cli import output
from services.cli.rebuilt import rebuilt
from services.governance import commands, queries
from services.governance.config import GovernanceConfig
from services.governance.deps import GovernanceDeps
from services.governance.errors import GovernanceError
from services.governance.policy import Requester
from services.governance.product import Product
from services.harness.clock import SystemClock

app = typer.Typer(help="Governance: products, tasks, gates and approvals.", no_args_is_help=True)
products_app = typer.Typer(help="The product registry.", no_args_is_help=True)
tasks_app = typer.Typer(help="Governance tasks: create, move through the state machine, approve.", no_args_is_help=True)
app.add_typer(products_app, name="products")
app.add_typer(tasks_app, name="tasks")

T = TypeVar("T")
AsOption = typer.Option(None, "--as", help="your name in the audit trail (default: $USER)")
VersionOption = typer.Option(..., "--expected-version", "-v", help="the task's current version (gov tasks show)")
ReasonOption = typer.Option("", "--reason", "-r", help="why (kept in the audit trail)")
EvidenceOption = typer.Option([], "--evidence", "-e", help="a link, path or note backing the change (repeatable)")


def _fail(exc: Exception) -> None:
    console.print(f"[red]error[/red]: {exc}")
    raise typer.Exit(2)


def _session(config: Path | None, credentials: Path | None, action: Callable[[GovernanceDeps], Awaitable[T]]) -> T:
    """Connect, rebuild the read model in memory, run ``action`` with governance deps; exit 2 with the reason
    when the command is refused (or the ``governance:`` section is invalid)."""
    settings, creds = load(config, credentials)
    try:
        gov_config = GovernanceConfig.model_validate(settings.governance)
    except ValidationError as exc:
        _fail(Exception(f"invalid governance section in the configuration: {exc}"))

    async def go() -> T:
        async with bus(settings, creds, name="nanoclaw-gov") as (_nc, store):
            async with rebuilt(store, [RegisteredGroups(), *governance_projections()]) as readmodel:
                deps = GovernanceDeps(repository=Repository(store, "cli"), readmodel=readmodel,
                                      config=gov_config, clock=SystemClock())
                return await action(deps)

    try:
        return run(go())
    except (GovernanceError, ConcurrencyError) as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


def _me(name: str | None) -> Requester:
    return Requester.person(name or os.environ.get("USER") or os.environ.get("USERNAME") or "operator")


async def _saved(deps: GovernanceDeps, aggregate):
    await deps.repository.save(aggregate)
    return aggregate


def _task_line(task) -> str:
    return f"task {task.id} is {task.state} (version {task.version})"


# -- products -----------------------------------------------------------------------------------------------


@products_app.command("add")
def products_add(product_id: str = typer.Argument(..., help="id: lowercase letters, digits, - and _"),
                 name: str = typer.Option(..., help="display name"),
                 status: str = typer.Option("active", help="active | paused | retired"),
                 risk: str = typer.Option("medium", help="low | medium | high | critical"),
                 as_: str | None = AsOption, config: Path | None = ConfigOption,
                 credentials: Path | None = CredentialsOption) -> None:
    """Register a product (or update an existing one)."""
    async def action(deps):
        return await _saved(deps, await _save_product(deps, _me(as_), product_id, name, status, risk))
    product = _session(config, credentials, action)
    out.print(f"product {product.id}: {product.name} ({product.status}, risk {product.risk_level})")


@products_app.command("update")
def products_update(product_id: str, name: str | None = typer.Option(None), status: str | None = typer.Option(None),
                    risk: str | None = typer.Option(None), as_: str | None = AsOption,
                    config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Change a product's name, status or risk level."""
    async def action(deps):
        return await _saved(deps, await _save_product(deps, _me(as_), product_id, name, status, risk, must_exist=True))
    product = _session(config, credentials, action)
    out.print(f"product {product.id}: {product.name} ({product.status}, risk {product.risk_level})")


async def _save_product(deps, me, product_id, name, status, risk, must_exist: bool = False):
    if must_exist and await deps.repository.get(Product, product_id) is None:
        raise GovernanceError(f"no product {product_id!r}")
    return await commands.save_product(deps.repository, me, product_id=product_id, name=name, status=status,
                                       risk_level=risk, at=deps.now())


@products_app.command("list")
def products_list(config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Show the product registry."""
    async def action(deps):
        return queries.products(deps.readmodel)
    table = output.table("product", "name", "status", "risk", "registered by", "updated")
    for p in _session(config, credentials, action):
        output.add_row(table, p["product_id"], p["name"], p["status"], p["risk_level"], p["created_by"], p["updated_at"])
    output.print_table(out, table)


# -- tasks --------------------------------------------------------------------------------------------------


@tasks_app.command("create")
def tasks_create(title: str, description: str = typer.Option("", "--description", "-d"),
                 product: str | None = typer.Option(None, help="product id"),
                 gate: list[str] = typer.Option([], "--gate", "-g", help="a gate to pass before DONE (repeatable)"),
                 assignee: str | None = typer.Option(None, help="group folder that executes it (developer role)"),
                 task_id: str | None = typer.Option(None, "--id", help="task id (default: generated gt-…)"),
                 reason: str = ReasonOption, as_: str | None = AsOption, config: Path | None = ConfigOption,
                 credentials: Path | None = CredentialsOption) -> None:
    """File a task in INBOX."""
    async def action(deps):
        task = await commands.create_task(
            deps.repository, deps.config, _me(as_), task_id=task_id or commands.new_task_id(), title=title,
            description=description, product_id=product, gates=list(gate), assignee=assignee, reason=reason,
            at=deps.now(), roles_of=deps.roles)
        return await _saved(deps, task)
    out.print(f"created {_task_line(_session(config, credentials, action))}")


@tasks_app.command("list")
def tasks_list(state: str | None = typer.Option(None), assignee: str | None = typer.Option(None),
               product: str | None = typer.Option(None), config: Path | None = ConfigOption,
               credentials: Path | None = CredentialsOption) -> None:
    """Show tasks (optionally filtered)."""
    async def action(deps):
        return queries.tasks(deps.readmodel, state=state.upper() if state else None, assignee=assignee,
                             product_id=product)
    table = output.table("task", "state", "v", "title", "product", "assignee", "gates", "updated")
    for t in _session(config, credentials, action):
        output.add_row(table, t["task_id"], t["state"], str(t["version"]), t["title"], t["product_id"] or "",
                      t["assignee"] or "", ", ".join(t["gates"]) or "none", t["updated_at"])
    output.print_table(out, table)


@tasks_app.command("show")
def tasks_show(task_id: str, as_json: bool = typer.Option(False, "--json", help="one compact JSON object"),
               config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Show one task with its audit trail, approvals and dispatches."""
    async def action(deps):
        row = queries.task(deps.readmodel, task_id)
        if row is None:
            raise GovernanceError(f"no governance task {task_id!r}")
        return row
    task: dict[str, Any] = _session(config, credentials, action)
    if as_json:
        output.print_ndjson([task])
        return
    out.print(f"[bold]{task['task_id']}[/bold] {task['title']} — {task['state']} (version {task['version']})")
    out.print(f"product {task['product_id'] or '-'} · assignee {task['assignee'] or '-'} · gates "
              f"{', '.join(task['gates']) or 'none'}")
    if task["review_summary"]:
        out.print(f"review summary: {task['review_summary']}")
    table = output.table("v", "at", "actor", "what", "reason", "evidence")
    for a in task["activities"]:
        what = {"transition": f"{a['from_state']} → {a['to_state']}", "approval": f"approved {a['gate']}",
                "created": "created", "assigned": "assigned", "dispatch": "dispatched"}.get(a["kind"], a["kind"])
        output.add_row(table, str(a["version"]), a["at"], a["actor"], what, a["reason"], ", ".join(a["evidence"]))
    output.print_table(out, table)


def _move(task_id: str, to: str | None, expected_version: int, reason: str, evidence: list[str],
          summary: str | None, as_: str | None, config: Path | None, credentials: Path | None) -> None:
    async def action(deps):
        target = to
        if target is None:  # unblock: back to the state it was blocked in
            blocked = await commands.load_task(deps.repository, task_id)
            if blocked.state != "BLOCKED":
                raise GovernanceError(f"task {task_id} is {blocked.state}, not BLOCKED: nothing to unblock")
            target = blocked.resume_state or ""
        task = await commands.transition_task(
            deps.repository, deps.config, _me(as_), task_id=task_id, to=target, expected_version=expected_version,
            reason=reason, evidence=list(evidence), review_summary=summary, at=deps.now())
        return await _saved(deps, task)
    out.print(_task_line(_session(config, credentials, action)))


@tasks_app.command("move")
def tasks_move(task_id: str, to: str = typer.Argument(..., help="TRIAGED, READY, DOING, REVIEW, APPROVAL, DONE, BLOCKED"),
               expected_version: int = VersionOption, reason: str = ReasonOption, evidence: list[str] = EvidenceOption,
               summary: str | None = typer.Option(None, "--summary", "-s", help="review summary (DOING → REVIEW)"),
               as_: str | None = AsOption, config: Path | None = ConfigOption,
               credentials: Path | None = CredentialsOption) -> None:
    """Move a task to another state."""
    _move(task_id, to, expected_version, reason, evidence, summary, as_, config, credentials)


@tasks_app.command("block")
def tasks_block(task_id: str, expected_version: int = VersionOption, reason: str = ReasonOption,
                as_: str | None = AsOption, config: Path | None = ConfigOption,
                credentials: Path | None = CredentialsOption) -> None:
    """Block a task (an unblock returns it to its current state)."""
    _move(task_id, "BLOCKED", expected_version, reason, [], None, as_, config, credentials)


@tasks_app.command("unblock")
def tasks_unblock(task_id: str, expected_version: int = VersionOption, reason: str = ReasonOption,
                  as_: str | None = AsOption, config: Path | None = ConfigOption,
                  credentials: Path | None = CredentialsOption) -> None:
    """Return a blocked task to the state it was blocked in."""
    _move(task_id, None, expected_version, reason, [], None, as_, config, credentials)


@tasks_app.command("approve")
def tasks_approve(task_id: str, gate: str, expected_version: int = VersionOption, reason: str = ReasonOption,
                  evidence: list[str] = EvidenceOption, as_: str | None = AsOption,
                  config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Approve one gate of a task in APPROVAL (the last gate moves it to DONE)."""
    async def action(deps):
        task = await commands.approve_task(deps.repository, deps.config, _me(as_), task_id=task_id, gate=gate,
                                           expected_version=expected_version, reason=reason, evidence=list(evidence),
                                           at=deps.now())
        return await _saved(deps, task)
    out.print(_task_line(_session(config, credentials, action)))


@tasks_app.command("assign")
def tasks_assign(task_id: str, folder: str, expected_version: int = VersionOption, reason: str = ReasonOption,
                 as_: str | None = AsOption, config: Path | None = ConfigOption,
                 credentials: Path | None = CredentialsOption) -> None:
    """Assign a task to a group folder holding the developer role."""
    async def action(deps):
        task = await commands.assign_task(deps.repository, _me(as_), task_id=task_id, assignee=folder,
                                          expected_version=expected_version, reason=reason, at=deps.now(),
                                          roles_of=deps.roles)
        return await _saved(deps, task)
    out.print(_task_line(_session(config, credentials, action)))


# -- roles --------------------------------------------------------------------------------------------------


@app.command("roles")
def roles(config: Path | None = ConfigOption, credentials: Path | None = CredentialsOption) -> None:
    """Show who holds which role, who approves each gate, and whether strict mode is on."""
    async def action(deps):
        return [(g.folder, sorted(deps.group_roles(g))) for g in group_refs(deps.readmodel)], deps.config
    groups, gov = _session(config, credentials, action)
    table = output.table("group folder", "roles")
    for folder, held in groups:
        output.add_row(table, folder, ", ".join(held) or "-")
    for folder in sorted(set(gov.roles) - {f for f, _ in groups}):
        output.add_row(table, f"{folder} (not registered)", ", ".join(gov.roles[folder]))
    output.print_table(out, table)
    gates = output.table("gate", "approver role", "approval runs go to")
    for name, gate in sorted(gov.gates.items()):
        output.add_row(gates, name, gate.role, gate.group or f"first folder with role {gate.role}")
    output.print_table(out, gates)
    out.print(f"strict mode: {'on' if gov.strict_mode else 'off'} · auto dispatch: {'on' if gov.auto_dispatch else 'off'}")
