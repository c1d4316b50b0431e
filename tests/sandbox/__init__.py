"""Helpers for the sandbox agent tests: run ``python -m sandbox.agent`` as a real subprocess and read its markers.

``AgentProcess.start(inp, ws)`` feeds the JSON input (then EOF) and captures stderr to a file (shown when a
wait fails). ``next_marker()`` returns the next parsed marker block; any stdout line outside a block fails the
test, since stdout is the protocol. All waits are bounded (``WAIT_S``) and only guard against hangs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START, END = "---NANOCLAW_OUTPUT_START---", "---NANOCLAW_OUTPUT_END---"
WAIT_S = 90.0


@dataclass
class Workspace:
    """A per-test HOME and workspace dirs (the env overrides of the process backend)."""

    root: Path

    def __post_init__(self) -> None:
        for d in (self.home, self.group, self.global_dir, self.extra):
            d.mkdir(parents=True, exist_ok=True)

    home = property(lambda self: self.root / "home")
    group = property(lambda self: self.root / "group")
    global_dir = property(lambda self: self.root / "global")
    extra = property(lambda self: self.root / "extra")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
        env.update(HOME=str(self.home), IS_SANDBOX="1",  # the tests run as root; the container does not
                   NANOCLAW_WORKSPACE_GROUP=str(self.group), NANOCLAW_WORKSPACE_GLOBAL=str(self.global_dir),
                   NANOCLAW_WORKSPACE_EXTRA=str(self.extra), PYTHONUNBUFFERED="1")
        env.update(extra)
        return env


def agent_input(nats_url: str, model_url: str, *, folder: str = "grp", run_id: str = "r1",
                **fields: Any) -> dict[str, Any]:
    """A valid ContainerInput; ``fields`` override top-level entries."""
    inp: dict[str, Any] = {
        "run_id": run_id, "prompt": "hello agent", "session_id": None, "group_folder": folder,
        "chat_jid": "120363000000000000@g.us", "is_main": False, "is_scheduled_task": False,
        "assistant_name": "Andy", "script": None,
        "nats": {"url": nats_url, "user": f"run-{run_id}", "password": "secret", "inbox_prefix": f"_INBOX_{run_id}",
                 "input_subject": f"nc.run.{folder}.{run_id}.input", "ipc_prefix": f"nc.ipc.{folder}"},
        "model": {"base_url": model_url, "token": f"proxy-token-{run_id}"},
    }
    inp.update(fields)
    return inp


class AgentProcess:
    def __init__(self, proc: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.idle: list[bool] = []  # each marker's ``idle`` flag, in order

    @classmethod
    async def start(cls, inp: dict[str, Any] | bytes, ws: Workspace, **env: str) -> "AgentProcess":
        stderr_path = ws.root / f"agent-{len(list(ws.root.glob('agent-*.stderr')))}.stderr"
        with open(stderr_path, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sandbox.agent", cwd=REPO, env=ws.env(**env),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err)
        assert proc.stdin is not None
        proc.stdin.write(inp if isinstance(inp, bytes) else json.dumps(inp).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        return cls(proc, stderr_path)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-6000:]

    async def _line(self) -> str | None:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT_S)
        except asyncio.TimeoutError:
            raise AssertionError(f"no output within {WAIT_S} s; stderr:\n{self.stderr()}") from None
        return raw.decode().rstrip("\n") if raw else None

    async def next_marker(self) -> dict[str, Any] | None:
        """The next marker's JSON, or None at EOF. Fails on stray stdout or a malformed block."""
        line = await self._line()
        if line is None:
            return None
        assert line == START, f"stray stdout line {line!r}; stderr:\n{self.stderr()}"
        body = await self._line()
        assert await self._line() == END, f"unterminated marker; stderr:\n{self.stderr()}"
        marker = json.loads(body or "")
        assert set(marker) == {"status", "result", "newSessionId", "error", "idle"}, marker
        self.idle.append(marker.pop("idle"))  # the end of a query, kept apart so the rest compare as before
        return marker

    async def remaining_markers(self) -> list[dict[str, Any]]:
        """Every further marker until stdout closes."""
        found = []
        while (m := await self.next_marker()) is not None:
            found.append(m)
        return found

    async def wait(self) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), WAIT_S)
        except asyncio.TimeoutError:
            raise AssertionError(f"agent did not exit within {WAIT_S} s; stderr:\n{self.stderr()}") from None

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


def all_text(value: Any) -> str:
    """Every string inside a JSON value, joined: for "does this request mention X" checks."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(all_text(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(all_text(v) for v in value)
    return ""


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks in a recorded Messages API request body."""
    return [block for m in body.get("messages", []) if isinstance(m.get("content"), list)
            for block in m["content"] if isinstance(block, dict) and block.get("type") == "tool_result"]


def user_texts(body: dict[str, Any]) -> list[str]:
    """Text of the user turns (tool results excluded), in order."""
    texts = []
    for m in body.get("messages", []):
        if m.get("role") != "user":
            continue
        content = m["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text")
    return texts
