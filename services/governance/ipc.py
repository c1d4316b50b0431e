"""The governance IPC tools: NATS requests ``nc.ipc.<folder>.gov_*`` from agents (docs/governance.md#tools).

Identity is the subject's folder token (the NATS server lets a run publish only under its own folder), never the
payload; the folder must be a registered group holding a governance role, and each command is authorised by
those roles (:mod:`services.governance.policy`). A change is answered only after its commit is stored; a
refused command gets ``{"ok": false, "error": …}`` naming the rule, the state or the conflict.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from projections.chat import group_by_folder
from services.governance import commands, queries
from services.governance.deps import GovernanceDeps
from services.governance.errors import GovernanceError, NotAuthorized
from services.governance.policy import Requester, require_any_role
from services.governance.task import GovTask
from services.harness.natsauth import IPC_PREFIX
from services.harness.service import Emit, Reply, Request


class BadInput(GovernanceError):
    """A request field is missing or has the wrong type."""


def _text(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{key!r} must be a non-empty string")
    return value.strip()


def _optional_text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInput(f"{key!r} must be a string")
    return value


def _strings(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise BadInput(f"{key!r} must be a list of non-empty strings")
    return [v.strip() for v in value]


def _version(data: dict[str, Any]) -> int:
    value = data.get("expected_version")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput("'expected_version' must be the task's current version (an integer ≥ 1, from gov_get or "
                       "gov_list)")
    return value


def _requester(req: Request, deps: GovernanceDeps) -> Requester:
    folder = req.token(2)
    group = group_by_folder(deps.readmodel, folder)
    if group is None:
        raise GovernanceError(f"no registered group has folder {folder!r}")
    requester = Requester.group(folder, deps.group_roles(group))
    require_any_role(requester)
    return requester


def _msg_id(req: Request) -> str:
    """A retried call (same ``Nc-Request-Id``) is stored once; another folder or tool is another request."""
    return f"ipc:{req.token(2)}:{req.token(3)}:{req.request_id}"


def _task_result(task: GovTask) -> dict[str, Any]:
    return {"task_id": task.id, "state": task.state, "version": task.version, "assignee": task.assignee,
            "gates": task.gates, "approved": sorted(task.approvals)}


Tool = Callable[[Request, GovernanceDeps, Requester], Awaitable[Reply]]


def _tool(fn: Tool) -> Callable[[Request, GovernanceDeps], Awaitable[Reply]]:
    """Resolve the requester, run the tool, and turn a refusal into an error reply."""
    async def handle(req: Request, deps: GovernanceDeps) -> Reply:
        try:
            return await fn(req, deps, _requester(req, deps))
        except NotAuthorized as exc:  # the requester's roles do not allow it: a security decision, recorded
            return Reply.refusal(str(exc))
        except GovernanceError as exc:
            return Reply.failure(str(exc))
    handle.__doc__ = fn.__doc__
    return handle


@_tool
async def gov_create_task(req: Request, deps: GovernanceDeps, me: Requester) -> Reply:
    """Args: ``title``; optional ``description``, ``product_id``, ``gates`` (list), ``assignee`` (main only),
    ``reason``. Answer: the task (``task_id``, ``state`` INBOX, ``version``)."""
    d = req.data
    task_id = commands.new_task_id(f"{me.principal}:{req.request_id}")
    existing = await deps.repository.get(GovTask, task_id)
    if existing is not None:  # a retried request (same Nc-Request-Id): it was stored the first time
        return Reply.success(_task_result(existing))
    task = await commands.create_task(
        deps.repository, deps.config, me, task_id=task_id,
        title=_text(d, "title") or "", description=_optional_text(d, "description"),
        product_id=_text(d, "product_id", required=False), gates=_strings(d, "gates"),
        assignee=_text(d, "assignee", required=False), reason=_optional_text(d, "reason"), at=deps.now(),
        roles_of=deps.roles)
    return Reply.success(_task_result(task), Emit.of(task, msg_id=_msg_id(req)))


@_tool
async def gov_transition(req: Request, deps: GovernanceDeps, me: Requester) -> Reply:
    """Args: ``task_id``, ``to`` (a state), ``expected_version``; optional ``reason``, ``evidence`` (list),
    ``review_summary`` (required for DOING → REVIEW in strict mode)."""
    d = req.data
    task = await commands.transition_task(
        deps.repository, deps.config, me, task_id=_text(d, "task_id") or "", to=_text(d, "to") or "",
        expected_version=_version(d), reason=_optional_text(d, "reason"), evidence=_strings(d, "evidence"),
        review_summary=_text(d, "review_summary", required=False), at=deps.now())
    return Reply.success(_task_result(task), Emit.of(task, msg_id=_msg_id(req)))


@_tool
async def gov_approve(req: Request, deps: GovernanceDeps, me: Requester) -> Reply:
    """Args: ``task_id``, ``gate``, ``expected_version``; optional ``reason``, ``evidence``. The last missing
    gate also moves the task to DONE."""
    d = req.data
    task = await commands.approve_task(
        deps.repository, deps.config, me, task_id=_text(d, "task_id") or "", gate=_text(d, "gate") or "",
        expected_version=_version(d), reason=_optional_text(d, "reason"), evidence=_strings(d, "evidence"),
        at=deps.now())
    return Reply.success(_task_result(task), Emit.of(task, msg_id=_msg_id(req)))


@_tool
async def gov_assign(req: Request, deps: GovernanceDeps, me: Requester) -> Reply:
    """Args: ``task_id``, ``assignee`` (a folder with the developer role), ``expected_version``; optional
    ``reason``. Main only."""
    d = req.data
    task = await commands.assign_task(
        deps.repository, me, task_id=_text(d, "task_id") or "", assignee=_text(d, "assignee") or "",
        expected_version=_version(d), reason=_optional_text(d, "reason"), at=deps.now(), roles_of=deps.roles)
    return Reply.success(_task_result(task), Emit.of(task, msg_id=_msg_id(req)))


@_tool
async def gov_list(req: Request, deps: GovernanceDeps, me: Requester) -> Reply:
    """Args (all optional filters): ``state``, ``assignee``, ``product_id``, ``mine`` (bool: assigned to the
    requester's folder). Answer: ``{"tasks": [...]}`` without history (see ``gov_get``)."""
    d = req.data
    mine = d.get("mine", False)
    if not isinstance(mine, bool):
        raise BadInput("'mine' must be true or false")
    state = _text(d, "state", required=False)
    rows = queries.tasks(deps.readmodel, state=state.upper() if state else None,
                         assignee=me.folder if mine else _text(d, "assignee", required=False),
                         product_id=_text(d, "product_id", required=False))
    return Reply.success({"tasks": rows, "your_roles": sorted(me.roles)})


@_tool
async def gov_get(req: Request, deps: GovernanceDeps, me: Requester) -> Reply:
    """Args: ``task_id``. Answer: the task with ``activities`` (the audit trail), ``approvals``, ``dispatches``."""
    task_id = _text(req.data, "task_id") or ""
    row = queries.task(deps.readmodel, task_id)
    if row is None:
        raise GovernanceError(f"no governance task {task_id!r}")
    return Reply.success(row)


@_tool
async def gov_products(req: Request, deps: GovernanceDeps, me: Requester) -> Reply:
    """No args. Answer: ``{"products": [...]}``."""
    return Reply.success({"products": queries.products(deps.readmodel)})


@_tool
async def gov_product_save(req: Request, deps: GovernanceDeps, me: Requester) -> Reply:
    """Args: ``product_id``; ``name`` (required for a new product), ``status``, ``risk_level``. Main only."""
    d = req.data
    product = await commands.save_product(
        deps.repository, me, product_id=_text(d, "product_id") or "", name=_text(d, "name", required=False),
        status=_text(d, "status", required=False), risk_level=_text(d, "risk_level", required=False), at=deps.now())
    return Reply.success({"product_id": product.id, "name": product.name, "status": product.status,
                          "risk_level": product.risk_level, "version": product.version},
                         Emit.of(product, msg_id=_msg_id(req)))


TOOLS = {"gov_create_task": gov_create_task, "gov_transition": gov_transition, "gov_approve": gov_approve,
         "gov_assign": gov_assign, "gov_list": gov_list, "gov_get": gov_get, "gov_products": gov_products,
         "gov_product_save": gov_product_save}
REQUESTS = {f"{IPC_PREFIX}.*.{name}": handler for name, handler in TOOLS.items()}
