"""The task pre-check script (v1 §14.4): decide whether a scheduled task needs the model at all.

The script runs with ``bash`` (30 s timeout, stdout capped at 1 MB). Its **last stdout line** must be JSON with
a boolean ``wakeAgent`` and optional ``data``. Any failure (non-zero exit, timeout, no output, bad JSON,
``wakeAgent`` missing or not a bool) counts as "do not wake", like v1: a broken check must not run the agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import tempfile
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sandbox.agent.script")

TIMEOUT_S = 30.0
MAX_OUTPUT = 1024 * 1024


@dataclass(frozen=True)
class ScriptOutcome:
    """``wake``: run the model; ``data``: the script's ``data`` (None if absent); ``reason``: why not, for logs."""

    wake: bool
    data: Any = None
    reason: str = ""


def parse_output(stdout: str) -> ScriptOutcome:
    """Decide from the script's stdout (the last non-empty line)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return ScriptOutcome(False, reason="no output")
    try:
        verdict = json.loads(lines[-1])
    except ValueError:
        return ScriptOutcome(False, reason=f"last line is not JSON: {lines[-1][:200]!r}")
    if not isinstance(verdict, dict) or not isinstance(verdict.get("wakeAgent"), bool):
        return ScriptOutcome(False, reason="last line has no boolean wakeAgent")
    return ScriptOutcome(verdict["wakeAgent"], verdict.get("data"),
                         "" if verdict["wakeAgent"] else "wakeAgent is false")


async def run_script(script: str, cwd: str | None = None, timeout_s: float = TIMEOUT_S) -> ScriptOutcome:
    """Run ``script`` with bash in ``cwd`` (if it exists) and the process environment; never raises."""
    fd, path = tempfile.mkstemp(prefix="task-script-", suffix=".sh")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(script)
        proc = await asyncio.create_subprocess_exec(
            "bash", path, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd if cwd and os.path.isdir(cwd) else None,
            start_new_session=True)  # its own process group, so a timeout can end the children too
        try:
            out, err = await asyncio.wait_for(_read_capped(proc), timeout_s)
        except asyncio.TimeoutError:
            # Kill the group: a child still holding the pipes (e.g. `sleep`) would keep wait() from returning.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            return ScriptOutcome(False, reason=f"timed out after {timeout_s:g} s")
        if err:
            log.info("task script stderr: %s", err[-2000:].decode(errors="replace"))
        if proc.returncode != 0:
            return ScriptOutcome(False, reason=f"exited with code {proc.returncode}")
        if len(out) > MAX_OUTPUT:
            # The true last line is lost, so there is no verdict to read (v1: maxBuffer exceeded is an error).
            return ScriptOutcome(False, reason=f"stdout over {MAX_OUTPUT} bytes")
        return parse_output(out.decode(errors="replace"))
    except OSError as exc:
        return ScriptOutcome(False, reason=f"could not run: {exc}")
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


async def _read_capped(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """Read stdout and stderr, keeping at most ``MAX_OUTPUT + 1`` bytes of each (so an overflow shows as a
    longer result; the rest is drained and dropped), then wait for the exit."""

    async def read(stream: asyncio.StreamReader) -> bytes:
        buf = bytearray()
        while chunk := await stream.read(65536):
            if len(buf) <= MAX_OUTPUT:
                buf += chunk[: MAX_OUTPUT + 1 - len(buf)]
        return bytes(buf)

    out, err = await asyncio.gather(read(proc.stdout), read(proc.stderr))  # type: ignore[arg-type]
    await proc.wait()
    return out, err


def script_prompt(data: Any, prompt: str) -> str:
    """The prompt for a woken task (v1 §14.4): the script's data, then the task's instructions."""
    return (f"[SCHEDULED TASK]\n\nScript output:\n{json.dumps(data, indent=2, ensure_ascii=False)}"
            f"\n\nInstructions:\n{prompt}")
