"""The "NanoClaw OS" tools: governance (docs/governance.md) and external access (docs/external-access.md),
as name → (service, description, input schema). The services check the caller's roles and capabilities
from the subject's folder. Every governance task change answers ``{task_id, state, version, assignee, gates,
approved}``."""

from __future__ import annotations

from typing import Any

from .schema import STR as _S, obj as _obj

_VERSION = {"type": "integer", "minimum": 1, "description": "The task's current version (from gov_get or gov_list)."}
_EVIDENCE = {"type": "array", "items": _S}
_STATES = ["INBOX", "TRIAGED", "READY", "DOING", "REVIEW", "APPROVAL", "DONE", "BLOCKED"]


GOV_TOOLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gov_create_task": ("governance", (
        "File a governance task (state INBOX). Main and developer groups may create tasks; only main may set "
        "assignee (a folder holding the developer or main role). gates: the approvals needed before DONE "
        "(security, revops, claims, product, or none). The answer gives the task_id and version for later calls."),
        _obj({"title": _S, "description": _S, "product_id": _S, "gates": {"type": "array", "items": _S},
              "assignee": _S, "reason": _S}, ["title"])),
    "gov_transition": ("governance", (
        "Move a task to another state (TRIAGED, READY, DOING, REVIEW, APPROVAL, DONE, BLOCKED; to unblock, move "
        "it back to the state it was blocked in). expected_version must be the task's current version; a stale "
        "one is refused as a conflict. DOING → REVIEW takes a review_summary (required in strict mode) and "
        "evidence. Main may make any legal move; the assignee READY → DOING → REVIEW and block/unblock; a gate "
        "approver REVIEW → APPROVAL and back to DOING."),
        _obj({"task_id": _S, "to": {"type": "string", "enum": _STATES}, "expected_version": _VERSION, "reason": _S,
              "review_summary": _S, "evidence": _EVIDENCE}, ["task_id", "to", "expected_version"])),
    "gov_approve": ("governance", (
        "Approve one gate of a task in APPROVAL. Needs the gate's approver role, and the requester must not have "
        "executed the task (separation of powers). One approval per task and gate; the last one moves the task "
        "to DONE."),
        _obj({"task_id": _S, "gate": _S, "expected_version": _VERSION, "reason": _S, "evidence": _EVIDENCE},
             ["task_id", "gate", "expected_version"])),
    "gov_assign": ("governance", (
        "Main group only: assign a task to a group folder holding the developer role. A READY task with an "
        "assignee is dispatched to that group."),
        _obj({"task_id": _S, "assignee": _S, "expected_version": _VERSION, "reason": _S},
             ["task_id", "assignee", "expected_version"])),
    "gov_list": ("governance", (
        "List governance tasks with state and version (gov_get has the history). Filters: state, assignee, "
        "product_id, mine (tasks assigned to this group). The answer also names this group's roles."),
        _obj({"state": _S, "assignee": _S, "product_id": _S, "mine": {"type": "boolean"}}, [])),
    "gov_get": ("governance", "One task with its audit trail (transitions, approvals, dispatches with actor, reason "
                "and evidence), its approvals and its dispatches.", _obj({"task_id": _S}, ["task_id"])),
    "gov_products": ("governance", "List the product registry (id, name, status, risk level).", _obj({}, [])),
    "gov_product_save": ("governance", (
        "Main group only: register a product (name required) or update the given fields of an existing one. "
        "status: active, paused or retired; risk_level: low, medium, high or critical."),
        _obj({"product_id": _S, "name": _S, "status": {"type": "string", "enum": ["active", "paused", "retired"]},
              "risk_level": {"type": "string", "enum": ["low", "medium", "high", "critical"]}}, ["product_id"])),
}


EXT_TOOLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ext_call": ("broker", (
        "Call an external API (GitHub, or an HTTP API the owner configured) through the broker, which holds the "
        "credentials and checks this group's access: level 1 read-only (GET), 2 write, 3 deploy/merge. Give a "
        "unique idempotency_key per intended call and reuse it to retry that same call: a repeat returns the "
        "first result instead of calling again (a key reused with different parameters is refused). The result "
        "has the provider's HTTP status and body; any status is an answer, so check it. 'refused (…)' means this "
        "group lacks access (ask the owner for a grant); 'retry later: …' means too many calls are in flight."),
        _obj({"provider": {**_S, "description": "Provider name, e.g. 'github'."},
              "idempotency_key": {**_S, "description": "1-128 of A-Z a-z 0-9 . _ : @ + -; unique per intended "
                                                       "call, reused to retry it."},
              "method": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                         "description": "Default GET."},
              "path": {**_S, "description": "GitHub: API path, e.g. /repos/OWNER/REPO/issues (query in 'query')."},
              "url": {**_S, "description": "HTTP providers: the absolute URL."},
              "query": {"type": "object", "description": "Query parameters (strings, numbers, booleans)."},
              "body": {"description": "JSON request body (not with GET/HEAD)."},
              "product": {**_S, "description": "The product this call is for (grants may be scoped to one)."}},
             ["provider", "idempotency_key"])),
}

OS_TOOLS = {**GOV_TOOLS, **EXT_TOOLS}
TIMEOUTS_S = {"ext_call": 45.0}
"""Tools that may take longer than the default: the broker waits up to ``broker.ext.request_timeout_s`` (30 s)
for the provider."""
