"""The in-process MCP server ``nc``: each tool is one NATS request to ``<ipc_prefix>.<tool>`` (docs/agent-runs.md).

Request body: the tool's arguments as JSON. Reply: ``{"ok": true, "result": …}`` → a text result (a string as
is, anything else as JSON); ``{"ok": false, "error": "…"}`` → an error result (``is_error``) with that text.
No responder → "<service> not available"; no answer within the timeout → an error saying the outcome is
unknown. A tool never reports a success the service did not confirm (unlike v1, quirk §23.18).

Identity and authorization are not decided here: the subject's folder token is the caller's identity and the
receiving service applies v1's matrix. ``register_group`` is still left out for non-main groups, so the model
is not offered a tool that can only fail.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import nats.errors
from claude_agent_sdk import SdkMcpTool, create_sdk_mcp_server, tool
from nats.aio.client import Client as NatsClient

from .os_tools import OS_TOOLS, TIMEOUTS_S
from .schema import STR as _STR, obj as _schema

log = logging.getLogger("sandbox.agent.tools")

SERVER_NAME = "nc"
DEFAULT_TIMEOUT_S = 15.0

_SCHEDULE_HELP = (
    "schedule_type/schedule_value: 'cron' with a 5-field cron expression in local time (e.g. '0 9 * * 1-5'); "
    "'interval' with milliseconds as a string (e.g. '3600000'); 'once' with a local timestamp WITHOUT 'Z' or "
    "an offset (e.g. '2026-02-01T15:30:00')."
)


_TASK_ID = {"type": "string", "description": "The task id (from list_tasks or schedule_task)."}
_TYPE = {"type": "string", "enum": ["cron", "interval", "once"]}
_CONTEXT = {"type": "string", "enum": ["group", "isolated"]}
_CATCH_UP = {"type": "string", "enum": ["once", "skip", "all"]}
_TZ = {"type": "string", "description": "IANA time zone, e.g. 'Europe/Berlin'."}

# name → (service, description, input schema)
TOOLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "send_message": ("router", (
        "Send a message to the chat right away, while you keep working (progress updates, several messages). "
        "Your final reply is sent anyway, so do not repeat it here. chat_jid is for the main group only: "
        "send to another registered chat."),
        _schema({"text": {**_STR, "description": "The message text."},
                 "chat_jid": {**_STR, "description": "Target chat (main group only); default: this chat."}},
                ["text"])),
    "register_group": ("router", (
        "Register a new chat as a group (main group only). folder is channel-prefixed, lowercase with hyphens, "
        "e.g. 'whatsapp_family-chat'. requires_trigger: whether messages must start with the trigger word "
        "(default false: the assistant answers every message)."),
        _schema({"jid": {**_STR, "description": "The chat JID."}, "name": {**_STR, "description": "Display name."},
                 "folder": {**_STR, "description": "Group folder name."},
                 "trigger": {**_STR, "description": "Trigger word, e.g. '@Andy'."},
                 "requires_trigger": {"type": "boolean"}},
                ["jid", "name", "folder", "trigger"])),
    "schedule_task": ("scheduler", (
        "Schedule a task: at the scheduled times the assistant runs with the prompt and its reply is sent to "
        "the chat (wrap text in <internal>…</internal> to keep it unsent). context_mode 'group' (default) runs "
        "with this group's conversation history; 'isolated' starts a fresh session each time, so the prompt "
        "must carry all context. catch_up says what happens to runs missed while the assistant was offline: "
        "'once' (default: one run for all of them), 'skip' or 'all'. timezone: an IANA zone for the schedule "
        "(default: the assistant's). script: optional bash pre-check whose last stdout line is JSON "
        "{\"wakeAgent\": bool, \"data\": …}; the assistant only runs when wakeAgent is true. " + _SCHEDULE_HELP),
        _schema({"prompt": {**_STR, "description": "What the assistant should do when the task runs."},
                 "schedule_type": _TYPE, "schedule_value": _STR, "context_mode": _CONTEXT, "catch_up": _CATCH_UP,
                 "timezone": _TZ,
                 "target_group_jid": {**_STR, "description": "Main group only: schedule for another group."},
                 "script": {**_STR, "description": "Optional bash pre-check script."}},
                ["prompt", "schedule_type", "schedule_value"])),
    "list_tasks": ("scheduler", "List scheduled tasks (the main group sees every group's tasks).", _schema({}, [])),
    "pause_task": ("scheduler", "Pause a scheduled task.", _schema({"task_id": _TASK_ID}, ["task_id"])),
    "resume_task": ("scheduler", "Resume a paused task.", _schema({"task_id": _TASK_ID}, ["task_id"])),
    "cancel_task": ("scheduler", "Cancel (delete) a scheduled task.", _schema({"task_id": _TASK_ID}, ["task_id"])),
    "update_task": ("scheduler", "Change a task; omitted fields stay as they are; script '' removes the script. "
                    + _SCHEDULE_HELP,
                    _schema({"task_id": _TASK_ID, "prompt": _STR, "schedule_type": _TYPE, "schedule_value": _STR,
                             "script": _STR, "context_mode": _CONTEXT, "catch_up": _CATCH_UP, "timezone": _TZ},
                            ["task_id"])),
    **OS_TOOLS,
}


def _text(text: str, *, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if error:
        result["is_error"] = True
    return result


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    if result is None:
        return "Done."
    return json.dumps(result, ensure_ascii=False, indent=2)


async def call_service(nc: NatsClient, subject: str, service: str, args: dict[str, Any],
                       timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """One NATS request; returns an MCP tool result dict (``is_error`` set on every failure)."""
    try:
        msg = await nc.request(subject, json.dumps(args).encode(), timeout=timeout_s)
    except nats.errors.NoRespondersError:
        return _text(f"{service} not available", error=True)
    except nats.errors.TimeoutError:
        # A timeout does not prove failure: the service may have acted and its reply got lost.
        return _text(f"{service} did not answer within {timeout_s:g} s; the request may or may not have "
                     "been carried out", error=True)
    except Exception as exc:  # connection closed, permissions, …: report, never raise into the CLI
        log.warning("request to %s failed: %r", subject, exc)
        return _text(f"{service} request failed: {exc or type(exc).__name__}", error=True)
    try:
        reply = json.loads(msg.data)
        ok = reply["ok"]
    except (ValueError, TypeError, KeyError):
        return _text(f"{service} sent an unreadable reply", error=True)
    if ok is True:
        return _text(_result_text(reply.get("result")))
    return _text(str(reply.get("error") or f"{service} refused the request"), error=True)


def _make_tool(name: str, nc: NatsClient, ipc_prefix: str, timeout_s: float) -> SdkMcpTool[Any]:
    service, description, schema = TOOLS[name]
    subject = f"{ipc_prefix}.{name}"

    async def handler(args: dict[str, Any]) -> dict[str, Any]:
        args = dict(args or {})  # defaults (context_mode 'group', catch_up 'once') are the scheduler's, not ours
        log.info("tool %s → %s", name, subject)
        return await call_service(nc, subject, service, args, max(timeout_s, TIMEOUTS_S.get(name, 0.0)))

    return tool(name, description, schema)(handler)


def tool_names(is_main: bool) -> list[str]:
    """The tools offered to a group: all of them for main, all but ``register_group`` otherwise."""
    return [n for n in TOOLS if is_main or n != "register_group"]


def build_server(nc: NatsClient, ipc_prefix: str, is_main: bool, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """The ``nc`` server config for ``ClaudeAgentOptions.mcp_servers`` (tools appear as ``mcp__nc__<name>``)."""
    return create_sdk_mcp_server(name=SERVER_NAME, version="1.0.0",
                                 tools=[_make_tool(n, nc, ipc_prefix, timeout_s) for n in tool_names(is_main)])
