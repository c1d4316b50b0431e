"""The main loop: one Claude session in streaming-input mode, fed by the initial prompt and NATS follow-ups.

Flow (v1 §9.4, with NATS instead of IPC files; docs/agent-runs.md):
1. connect to NATS as this run's user and subscribe to ``nats.input_subject`` (before the model starts, so a
   follow-up or close sent at once is not lost);
2. task pre-check script, if any (``script.py``); ``wakeAgent`` false → one success marker (result null), exit 0.
   Follow-ups during the script are refused (``task pre-check running``), a close is honoured after it;
3. start ``ClaudeSDKClient`` with a user-message stream that stays open; each ``ResultMessage`` → a marker;
4. when the CLI reports the session idle (``session_state_changed``), the query is over: emit the
   session-update marker (result null, ``idle`` true: the queue pipes the next turns only now) and wait; a
   follow-up becomes the next user turn of the same session;
5. ``close`` → finish the current query, then exit 0 with no further marker.

A query counts as over only on the CLI's "idle" state, not on a result: a follow-up pushed mid-query may be
folded into the running turn (one result for two messages) or run as a turn of its own, and only the CLI
knows which. Any exception, and any error result, ends the run: error marker, exit 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import nats
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage, SystemMessage
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from . import tools
from .protocol import ContainerInput, MarkerWriter, NatsSettings
from .script import run_script, script_prompt

log = logging.getLogger("sandbox.agent")

SCHEDULED_PREFIX = ("[SCHEDULED TASK - The following message was sent automatically and is not coming directly "
                    "from the user or group.]\n\n")
# v1 §9.5, with our MCP server's name.
ALLOWED_TOOLS = ["Bash", "Read", "Write", "Edit", "Glob", "Grep", "WebSearch", "WebFetch", "Task", "TaskOutput",
                 "TaskStop", "TeamCreate", "TeamDelete", "SendMessage", "TodoWrite", "ToolSearch", "Skill",
                 "NotebookEdit", f"mcp__{tools.SERVER_NAME}__*"]
NATS_CONNECT_WINDOW_S = 5.0


def _env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (tests shorten the waits), else ``default``."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


class AgentError(RuntimeError):
    """The model run failed (an error result, or the CLI went away)."""


@dataclass(frozen=True)
class Workspace:
    """Where the group's files are. In the container the fixed mounts; the process backend overrides them."""

    group: str
    global_dir: str
    extra: str

    @classmethod
    def from_env(cls) -> "Workspace":
        env = os.environ.get
        return cls(env("NANOCLAW_WORKSPACE_GROUP") or "/workspace/group",
                   env("NANOCLAW_WORKSPACE_GLOBAL") or "/workspace/global",
                   env("NANOCLAW_WORKSPACE_EXTRA") or "/workspace/extra")

    def extra_dirs(self) -> list[str]:
        root = Path(self.extra)
        return sorted(str(p) for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def global_memory(self) -> str | None:
        path = Path(self.global_dir) / "CLAUDE.md"
        return path.read_text() if path.is_file() else None


def build_options(inp: ContainerInput, ws: Workspace, mcp_server: Any) -> ClaudeAgentOptions:
    """SDK options (v1 §9.5). The model is reached only through the run's proxy with its proxy token."""
    system_prompt: dict[str, Any] = {"type": "preset", "preset": "claude_code"}
    memory = None if inp.is_main else ws.global_memory()
    if memory:
        system_prompt["append"] = memory  # main has the global folder in its own workspace instead
    env = {
        "ANTHROPIC_BASE_URL": inp.model.base_url,
        "ANTHROPIC_API_KEY": inp.model.token,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "ENABLE_TOOL_SEARCH": "false",  # MCP tools directly in tools[], not deferred behind ToolSearch
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "165000",
        # Our end-of-query signal: session_state_changed frames delivered to us (see module docstring).
        "CLAUDE_CODE_EMIT_SESSION_STATE_EVENTS": "1",
    }
    return ClaudeAgentOptions(
        cwd=ws.group, system_prompt=system_prompt, resume=inp.session_id, permission_mode="bypassPermissions",
        allowed_tools=list(ALLOWED_TOOLS), setting_sources=["project", "user"], add_dirs=ws.extra_dirs(),
        mcp_servers={tools.SERVER_NAME: mcp_server}, env=env)


async def connect_nats(s: NatsSettings, run_id: str, window_s: float | None = None) -> NatsClient:
    """Connect as the run's user, retrying for ``window_s`` s (default ``$NANOCLAW_NATS_CONNECT_S`` or 5 s):
    the server may still be reloading the users file that holds our user.

    Raises:
        ConnectionError: no connection within the window.
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc or type(exc).__name__)

    window_s = window_s or _env_seconds("NANOCLAW_NATS_CONNECT_S", NATS_CONNECT_WINDOW_S)
    try:
        servers = [url.strip() for url in s.url.split(",") if url.strip()]  # a cluster: every node
        return await asyncio.wait_for(nats.connect(
            servers, user=s.user, password=s.password, inbox_prefix=s.inbox_prefix, name=f"agent-{run_id}",
            connect_timeout=2, reconnect_time_wait=0.25, max_reconnect_attempts=-1, error_cb=on_error), window_s)
    except Exception as exc:
        raise ConnectionError(f"cannot connect to NATS at {s.url} within {window_s:g} s: "
                              f"{exc or type(exc).__name__}") from None


def initial_prompt(inp: ContainerInput) -> str:
    return SCHEDULED_PREFIX + inp.prompt if inp.is_scheduled_task else inp.prompt


class Conversation:
    """State shared by the NATS input handler and the SDK message loop (all on one event loop).

    ``busy``: a query is under way (set on every push, cleared on "idle" after a result). ``closing``: a close
    arrived; further inputs are refused. ``stopped`` fires when the run should end.
    """

    def __init__(self, out: MarkerWriter, session_id: str | None) -> None:
        self.out = out
        self.session_id = session_id
        self.accepting = False  # messages before the model may run (during the task script) are refused
        self.busy = False
        self.closing = False
        self.result_since_push = False
        self.state_frames = False  # has the CLI reported session state at all?
        self.stopped = asyncio.Event()
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    # --- input side ---------------------------------------------------------------------------------------
    def push(self, text: str) -> None:
        self._queue.put_nowait(text)
        self.busy = True
        self.result_since_push = False

    async def user_messages(self) -> AsyncIterator[dict[str, Any]]:
        """The live stream the SDK reads. Texts queued together become one turn joined by "\\n" (v1)."""
        while True:
            text = await self._queue.get()
            if text is None:
                return
            parts, end = [text], False
            while not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    end = True
                    break
                parts.append(more)
            yield {"type": "user", "message": {"role": "user", "content": "\n".join(parts)},
                   "parent_tool_use_id": None, "session_id": "default"}
            if end:
                return

    def end_stream(self) -> None:
        self._queue.put_nowait(None)

    async def on_input(self, msg: Msg) -> None:
        """NATS handler for ``input_subject``: ``{"type":"message","text":…}`` or ``{"type":"close"}``.

        Only requests count: the runner always asks for an answer. A message without a reply subject is ignored,
        because that is what a service's *answer* looks like when another sandbox sets this run's input subject
        as the reply subject of its own tool call (the server routes such answers within the sandbox account;
        docs/agent-runs.md, "Reply subjects")."""
        if not msg.reply:
            log.warning("ignored a message on the input subject that is not a request (%d bytes)", len(msg.data))
            return
        reply: dict[str, Any] = {"ok": True}
        try:
            req = json.loads(msg.data)
            kind = req.get("type") if isinstance(req, dict) else None
        except ValueError:
            kind = req = None
        if self.closing:
            # A repeated close is already being honoured; anything else can no longer reach the model.
            reply = {"ok": True} if kind == "close" else {"ok": False, "error": "closing"}
        elif kind == "message" and isinstance(req.get("text"), str):
            if self.accepting:
                self.push(req["text"])
                log.info("follow-up received (%d chars)", len(req["text"]))
            else:
                reply = {"ok": False, "error": "task pre-check running"}
        elif kind == "close":
            self.closing = True
            log.info("close received (%s)", "during a query" if self.busy else "while idle")
            if not self.busy:
                self.stopped.set()
        else:
            reply = {"ok": False, "error": "bad input: expected {type: message, text} or {type: close}"}
        await msg.respond(json.dumps(reply).encode())

    # --- model side ---------------------------------------------------------------------------------------
    def on_message(self, m: Any) -> None:
        """Handle one SDK message. Raises ``AgentError`` on an error result."""
        if isinstance(m, SystemMessage):
            if m.subtype == "init" and m.data.get("session_id"):
                self.session_id = m.data["session_id"]
            elif m.subtype == "session_state_changed":
                self.state_frames = True
                if m.data.get("state") == "idle":
                    self._on_idle()
        elif isinstance(m, ResultMessage):
            self.session_id = m.session_id or self.session_id
            self.result_since_push = True
            if m.is_error:
                detail = m.result or "; ".join(m.errors or []) or m.subtype
                raise AgentError(f"model run failed ({m.subtype}): {detail}")
            self.out.success(m.result or None, self.session_id)
            if not self.state_frames:
                self._on_idle()  # a CLI without state frames: the result is all there is to go on

    def _on_idle(self) -> None:
        # An idle with no result since the last push is the CLI settling before it takes that push up.
        if not self.busy or not self.result_since_push:
            return
        self.busy = False
        if self.closing:
            self.stopped.set()  # v1 §9.4 step 9: close during the query → exit without a marker
            return
        self.out.success(None, self.session_id, idle=True)


async def _drive(client: ClaudeSDKClient, conv: Conversation) -> None:
    async for m in client.receive_messages():
        conv.on_message(m)
        if conv.stopped.is_set():
            return
    raise AgentError("the Claude CLI ended the session unexpectedly")


async def run_model(inp: ContainerInput, conv: Conversation, nc: NatsClient, ws: Workspace) -> None:
    """Run the session (the prompt is already queued in ``conv``) until ``conv.stopped``. Raises on failure."""
    timeout_s = _env_seconds("NANOCLAW_IPC_TIMEOUT_S", tools.DEFAULT_TIMEOUT_S)
    options = build_options(inp, ws, tools.build_server(nc, inp.nats.ipc_prefix, inp.is_main, timeout_s))
    client = ClaudeSDKClient(options)
    await client.connect(conv.user_messages())
    driver = asyncio.create_task(_drive(client, conv))
    stop = asyncio.create_task(conv.stopped.wait())
    try:
        done, _ = await asyncio.wait({driver, stop}, return_when=asyncio.FIRST_COMPLETED)
        if driver in done:
            driver.result()  # re-raise a failure
    finally:
        # Also on cancellation (SIGTERM): nothing may keep reading from, or leave running, the CLI.
        driver.cancel()
        stop.cancel()
        conv.end_stream()
        await client.disconnect()


async def run(inp: ContainerInput, out: MarkerWriter, ws: Workspace | None = None) -> int:
    """One run; returns the process exit code (0 done or closed, 1 failed after an error marker)."""
    ws = ws or Workspace.from_env()
    conv = Conversation(out, inp.session_id)
    nc: NatsClient | None = None
    try:
        nc = await connect_nats(inp.nats, inp.run_id)
        if not inp.script:
            # Queued before we subscribe, so follow-ups can only come after it (and join it if early, as v1).
            conv.push(initial_prompt(inp))
            conv.accepting = True
        await nc.subscribe(inp.nats.input_subject, cb=conv.on_input)
        await nc.flush()  # the subscription is live on the server before the model starts
        if inp.script:
            outcome = await run_script(inp.script, cwd=ws.group)
            if not outcome.wake:
                log.info("task script: not waking the agent (%s)", outcome.reason)
                out.success(None, inp.session_id, idle=True)
                return 0
            if conv.closing:
                log.info("closed during the task script; not starting the model")
                return 0
            conv.push(script_prompt(outcome.data, inp.prompt))
            conv.accepting = True
        await run_model(inp, conv, nc, ws)
        return 0
    except Exception as exc:
        log.exception("run failed")
        out.error(str(exc) or type(exc).__name__, conv.session_id)
        return 1
    finally:
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), 5)
            except Exception as exc:  # closing is best effort; the process ends anyway
                log.warning("nats close: %r", exc)
