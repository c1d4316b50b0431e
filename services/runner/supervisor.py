"""Runs one sandbox to completion: input on stdin, output blocks from stdout, hard timeout, run log, outcome.

Protocol (docs/agent-runs.md, v1 §9.3): stdout carries zero or more blocks ::

    ---NANOCLAW_OUTPUT_START---
    {"status": "success"|"error", "result": …, "newSessionId": …, "error": …}
    ---NANOCLAW_OUTPUT_END---

Blocks are parsed as they arrive (markers may be split across reads) and handed to ``on_output`` one at a time,
in order, each awaited before the next. Every well-formed block resets the hard timeout; a malformed one is
logged and skipped; stderr never resets it (it is logged at debug and kept for the run log).

Outcomes (v1 §19): hard timeout after any output → ``succeeded`` ("idle cleanup"; ``timed_out=True``); hard
timeout with no output → ``timed_out``, "Container timed out after <ms>ms"; non-zero exit → ``failed``,
"Container exited with code N: <last 200 chars of stderr>"; spawn failure → ``failed``, "Container spawn error:
…". On timeout the sandbox is stopped with ``backend.stop(name, grace)``; if that fails or the process does not
exit within ``grace + 5`` s, the local process is killed. Closing an idle run is not done here (it goes over
NATS); only the hard timeout.

Every run writes ``<log_dir>/container-<ISO timestamp, ':' and '.' → '-'>.log`` (v1 §20).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal

from services.runner.sandbox.base import GROUP_LABEL, SandboxBackend, SandboxProcess, SandboxSpec

logger = logging.getLogger(__name__)

START_MARKER = "---NANOCLAW_OUTPUT_START---"
END_MARKER = "---NANOCLAW_OUTPUT_END---"
STDERR_TAIL_CHARS = 200
_READ = 64 * 1024
_REDACT = {("nats", "password"), ("model", "token")}  # per-run credentials never reach a log file

OnOutput = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class RunOutcome:
    """``status``: succeeded | failed | timed_out. ``error``: the v1 message, None on success. ``exit_code``:
    None when nothing was spawned (negative: killed by that signal, process backend). ``outputs``: the parsed
    blocks in order. ``duration_ms``: spawn to exit. ``timed_out``: the hard timeout fired (also on an idle
    cleanup that counts as success). ``log_path``: the run log, if written."""

    status: Literal["succeeded", "failed", "timed_out"]
    error: str | None
    exit_code: int | None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: int = 0
    had_output: bool = False
    timed_out: bool = False
    log_path: Path | None = None


class OutputParser:
    """Incremental marker parser: :meth:`feed` text, get the complete blocks' payload strings. An unterminated
    block larger than ``max_chars`` is dropped (with a warning) so a runaway agent cannot grow the buffer."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars, self._buf = max_chars, ""

    def feed(self, text: str) -> list[str]:
        self._buf += text
        blocks = []
        while True:
            start = self._buf.find(START_MARKER)
            if start == -1:  # keep only what could be the beginning of a split START marker
                self._buf = self._buf[-(len(START_MARKER) - 1):]
                return blocks
            end = self._buf.find(END_MARKER, start + len(START_MARKER))
            if end == -1:
                self._buf = self._buf[start:]
                if len(self._buf) > self.max_chars:
                    logger.warning("output block exceeds %d chars without an end marker; dropped", self.max_chars)
                    self._buf = ""
                return blocks
            blocks.append(self._buf[start + len(START_MARKER):end].strip())
            self._buf = self._buf[end + len(END_MARKER):]


class _Capped:
    """Keeps the first ``limit`` bytes (for the log) and the last few hundred characters (for errors)."""

    def __init__(self, limit: int, what: str, group: str) -> None:
        self.limit, self.what, self.group = limit, what, group
        self.data, self.truncated, self.tail = bytearray(), False, ""

    def add(self, chunk: bytes) -> None:
        self.tail = (self.tail + chunk.decode(errors="replace"))[-4 * STDERR_TAIL_CHARS:]
        room = self.limit - len(self.data)
        if len(chunk) > room and not self.truncated:
            self.truncated = True
            logger.warning("container %s truncated at %d bytes (group %s)", self.what, self.limit, self.group)
        self.data += chunk[:max(room, 0)]

    def text(self) -> str:
        return self.data.decode(errors="replace")


def log_file_name(started: datetime) -> str:
    """``container-2026-05-07T10-11-12-123Z.log`` (v1: ``toISOString()`` with ``:`` and ``.`` → ``-``)."""
    iso = started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{started.microsecond // 1000:03d}Z"
    return "container-" + iso.replace(":", "-").replace(".", "-") + ".log"


class Supervisor:
    """Args: ``backend`` (starts and stops sandboxes); ``stop_grace_s`` (SIGTERM → kill on timeout);
    ``max_output_bytes`` (stdout and stderr kept for the log, each); ``verbose`` (full logs and input, as v1's
    ``LOG_LEVEL=debug``; the per-run NATS password and model token are redacted even then)."""

    def __init__(self, backend: SandboxBackend, *, stop_grace_s: float = 10, max_output_bytes: int = 10 << 20,
                 verbose: bool = False) -> None:
        self.backend, self.stop_grace_s = backend, stop_grace_s
        self.max_output_bytes, self.verbose = max_output_bytes, verbose

    async def run(self, spec: SandboxSpec, stdin: bytes | dict[str, Any], on_output: OnOutput, *,
                  hard_timeout_ms: int, log_dir: Path | None, group: str | None = None,
                  is_main: bool | None = None) -> RunOutcome:
        """Run ``spec`` with ``stdin`` (the input JSON, as bytes or a dict) and return the outcome; see the module
        docstring. ``group``/``is_main`` for the log default to the spec's ``nanoclaw.group`` label and the
        input's ``is_main``. Never raises for sandbox failures (they are outcomes); a cancelled run stops its
        sandbox before re-raising."""
        started, t0 = datetime.now(timezone.utc), time.monotonic()
        input_data = stdin if isinstance(stdin, dict) else _parse_input(stdin)
        payload = json.dumps(stdin).encode() if isinstance(stdin, dict) else stdin
        group = group or spec.labels.get(GROUP_LABEL) or spec.name
        is_main = bool(input_data.get("is_main")) if is_main is None else is_main
        try:
            proc = await self.backend.run(spec)
        except Exception as exc:  # noqa: BLE001 — any spawn problem is the run's outcome, as in v1
            logger.error("Container spawn error for group %s: %s", group, exc)
            outcome = RunOutcome("failed", f"Container spawn error: {exc}", None)
            outcome.log_path = self._write_log(log_dir, started, spec, input_data, outcome, None, None, [], group,
                                               is_main)
            return outcome
        run = _Run(self, spec, proc, on_output, hard_timeout_ms, group)
        try:
            code = await run.supervise(payload)
        finally:
            if proc.returncode is None:  # cancelled: never leave a sandbox behind
                await asyncio.shield(run.stop())
        outcome = run.outcome(code)
        outcome.duration_ms = int((time.monotonic() - t0) * 1000)
        outcome.log_path = self._write_log(log_dir, started, spec, input_data, outcome, run.stdout, run.stderr,
                                           proc.argv, group, is_main)
        return outcome

    def _write_log(self, log_dir: Path | None, started: datetime, spec: SandboxSpec, input_data: dict[str, Any],
                   outcome: RunOutcome, stdout: _Capped | None, stderr: _Capped | None, argv: list[str],
                   group: str, is_main: bool) -> Path | None:
        if log_dir is None:
            return None
        text = render_log(started, spec, input_data, outcome, stdout, stderr, argv, group, is_main, self.verbose)
        path = Path(log_dir) / log_file_name(started)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:  # a log problem must not turn a finished run into a failure
            logger.warning("could not write run log %s: %s", path, exc)
            return None
        return path


class _Run:
    """State of one supervised process (readers, timeout, outputs)."""

    def __init__(self, sup: Supervisor, spec: SandboxSpec, proc: SandboxProcess, on_output: OnOutput,
                 hard_timeout_ms: int, group: str) -> None:
        self.sup, self.spec, self.proc, self.on_output, self.group = sup, spec, proc, on_output, group
        self.hard_timeout_ms = hard_timeout_ms
        self.stdout = _Capped(sup.max_output_bytes, "stdout", group)
        self.stderr = _Capped(sup.max_output_bytes, "stderr", group)
        self.outputs: list[dict[str, Any]] = []
        self.timed_out = False
        self.deadline = 0.0

    def reset_timeout(self) -> None:
        self.deadline = asyncio.get_running_loop().time() + self.hard_timeout_ms / 1000

    async def supervise(self, stdin: bytes) -> int:
        self.reset_timeout()
        readers = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]
        watchdog = asyncio.create_task(self._watchdog())
        try:
            try:
                await self.proc.send_input(stdin)
            except (BrokenPipeError, ConnectionResetError) as exc:  # exited early; its exit code tells why
                logger.warning("could not write input to %s: %s", self.spec.name, exc)
            await asyncio.gather(*readers)
            return await self.proc.wait()
        finally:
            for task in (*readers, watchdog):
                task.cancel()
            await asyncio.gather(*readers, watchdog, return_exceptions=True)

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while (delay := self.deadline - loop.time()) > 0:
            await asyncio.sleep(delay)
        self.timed_out = True
        logger.error("Container timeout for group %s (%s); stopping", self.group, self.spec.name)
        await self.stop()

    async def stop(self) -> None:
        """Graceful stop through the backend, then kill the local process if it is still there."""
        grace = self.sup.stop_grace_s
        try:
            await self.sup.backend.stop(self.spec.name, grace)
            await asyncio.wait_for(self.proc.wait(), grace + 5)
        except Exception as exc:  # noqa: BLE001 — stop failed or hung: the kill below is the fallback
            logger.warning("graceful stop of %s failed (%r); killing", self.spec.name, exc)
            self.proc.kill()

    async def _read_stdout(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        parser = OutputParser(self.sup.max_output_bytes)
        while chunk := await self.proc.stdout.read(_READ):
            self.stdout.add(chunk)
            for block in parser.feed(decoder.decode(chunk)):
                await self._block(block)
        for block in parser.feed(decoder.decode(b"", final=True)):
            await self._block(block)

    async def _block(self, text: str) -> None:
        try:
            payload = json.loads(text)
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            logger.warning("malformed output block from %s (%s): %.200s", self.spec.name, exc, text)
            return
        self.outputs.append(payload)
        self.reset_timeout()
        try:
            await self.on_output(payload)
        except Exception:  # noqa: BLE001 — a failing consumer must not abandon the sandbox mid-run
            logger.exception("on_output failed for %s", self.spec.name)

    async def _read_stderr(self) -> None:
        pending = ""
        while chunk := await self.proc.stderr.read(_READ):
            self.stderr.add(chunk)
            *lines, pending = (pending + chunk.decode(errors="replace")).split("\n")
            for line in lines:
                if line.strip():
                    logger.debug("[%s] %s", self.group, line)
        if pending.strip():
            logger.debug("[%s] %s", self.group, pending)

    def outcome(self, code: int) -> RunOutcome:
        had = bool(self.outputs)
        if self.timed_out and had:
            return RunOutcome("succeeded", None, code, self.outputs, had_output=True, timed_out=True)
        if self.timed_out:
            return RunOutcome("timed_out", f"Container timed out after {self.hard_timeout_ms}ms", code,
                              self.outputs, timed_out=True)
        if code != 0:
            error = f"Container exited with code {code}: {self.stderr.tail[-STDERR_TAIL_CHARS:]}"
            return RunOutcome("failed", error, code, self.outputs, had_output=had)
        return RunOutcome("succeeded", None, code, self.outputs, had_output=had)


async def supervise(backend: SandboxBackend, spec: SandboxSpec, stdin: bytes | dict[str, Any], *,
                    on_output: OnOutput, hard_timeout_ms: int, stop_grace_s: float = 10, log_dir: Path | None = None,
                    max_output_bytes: int = 10 << 20, verbose: bool = False, group: str | None = None,
                    is_main: bool | None = None) -> RunOutcome:
    """One-call form of :meth:`Supervisor.run` (same arguments and outcome)."""
    sup = Supervisor(backend, stop_grace_s=stop_grace_s, max_output_bytes=max_output_bytes, verbose=verbose)
    return await sup.run(spec, stdin, on_output, hard_timeout_ms=hard_timeout_ms, log_dir=log_dir, group=group,
                         is_main=is_main)


def _parse_input(stdin: bytes) -> dict[str, Any]:
    try:
        data = json.loads(stdin)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _redacted(input_data: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(input_data, default=str))
    for section, key in _REDACT:
        if isinstance(out.get(section), dict) and key in out[section]:
            out[section][key] = "<redacted>"
    return out


def render_log(started: datetime, spec: SandboxSpec, input_data: dict[str, Any], outcome: RunOutcome,
               stdout: _Capped | None, stderr: _Capped | None, argv: list[str], group: str, is_main: bool,
               verbose: bool) -> str:
    """The run log text (v1 §20): a header, the input summary and container-side mounts; on error or when
    verbose also the args, host→container mounts, stderr and stdout; the full input only when verbose."""
    timeout_header = " (TIMEOUT)" if outcome.timed_out else ""
    lines = [f"=== Container Run Log{timeout_header} ===", f"Timestamp: {started.isoformat()}", f"Group: {group}",
             f"Container: {spec.name}", f"IsMain: {str(is_main).lower()}", f"Duration: {outcome.duration_ms}ms",
             f"Exit Code: {outcome.exit_code}", f"Status: {outcome.status}",
             f"Had Streaming Output: {str(outcome.had_output).lower()}", f"Outputs: {len(outcome.outputs)}",
             f"Stdout Truncated: {str(bool(stdout and stdout.truncated)).lower()}",
             f"Stderr Truncated: {str(bool(stderr and stderr.truncated)).lower()}"]
    if outcome.error:
        lines.append(f"Error: {outcome.error}")
    prompt = input_data.get("prompt")
    lines += ["", "=== Input Summary ===", f"Prompt length: {len(prompt) if isinstance(prompt, str) else 0} chars",
              f"Session ID: {input_data.get('session_id') or 'new'}",
              f"Scheduled task: {str(bool(input_data.get('is_scheduled_task'))).lower()}",
              "", "=== Mounts ===", *(f"{m.container}{' (ro)' if m.read_only else ''}" for m in spec.mounts)]
    if verbose:
        lines += ["", "=== Input ===", json.dumps(_redacted(input_data), indent=2, ensure_ascii=False)]
    if verbose or outcome.status != "succeeded":
        lines += ["", "=== Container Args ===", shlex.join(argv),
                  "", "=== Mounts (host -> container) ===",
                  *(f"{m.host} -> {m.container}{' (ro)' if m.read_only else ''}" for m in spec.mounts),
                  "", "=== Stderr ===", stderr.text() if stderr else "",
                  "", "=== Stdout ===", stdout.text() if stdout else ""]
    return "\n".join(lines) + "\n"
