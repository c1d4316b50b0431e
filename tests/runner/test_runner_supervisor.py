"""The supervisor with the process backend and tiny fake agents (``python -c``): v1 container-runner.test.ts
scenarios, marker parsing, timeouts (ms-level), outcomes and the run log. No durations are asserted."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from services.runner.sandbox.base import GROUP_LABEL, Mount, SandboxSpec
from services.runner.sandbox.process import ProcessBackend
from services.runner.supervisor import END_MARKER, START_MARKER, OutputParser, Supervisor, log_file_name, supervise
from tests.support import eventually

PRELUDE = f"""
import json, os, sys, time
inp = json.loads(sys.stdin.read())
def out(d):
    sys.stdout.write({START_MARKER!r} + '\\n' + json.dumps(d) + '\\n' + {END_MARKER!r} + '\\n')
    sys.stdout.flush()
"""

INPUT = {"run_id": "r1", "prompt": "<messages>very private words</messages>", "session_id": None,
         "group_folder": "family", "chat_jid": "1@g.us", "is_main": False, "is_scheduled_task": False,
         "nats": {"url": "nats://x", "user": "run-r1", "password": "nats-pass-xyz"},
         "model": {"base_url": "http://x", "token": "model-token-xyz"}}


@pytest.fixture
def backend() -> ProcessBackend:
    return ProcessBackend()


@pytest.fixture
def group_dir(tmp_path: Path) -> Path:
    d = tmp_path / "groups" / "family"
    d.mkdir(parents=True)
    return d


def agent(group_dir: Path, code: str, name: str = "nanoclaw-family-1") -> SandboxSpec:
    return SandboxSpec(name=name, image="unused", mounts=[Mount(str(group_dir), "/workspace/group", read_only=False)],
                       labels={GROUP_LABEL: "family"}, command=[sys.executable, "-c", PRELUDE + code])


class Collector:
    def __init__(self, delay_first: float = 0.0, fail_first: bool = False) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.delay_first, self.fail_first = delay_first, fail_first

    async def __call__(self, block: dict[str, Any]) -> None:
        first = not self.blocks
        if first and self.delay_first:
            await asyncio.sleep(self.delay_first)  # a slow consumer must not reorder later blocks
        self.blocks.append(block)
        if first and self.fail_first:
            raise RuntimeError("consumer broke")


async def run(backend, spec, on_output, group_dir: Path, hard_ms: int = 60_000, **kw):
    return await supervise(backend, spec, json.dumps(INPUT).encode(), on_output=on_output, hard_timeout_ms=hard_ms,
                           stop_grace_s=2, log_dir=group_dir / "logs", **kw)


# --- v1 container-runner.test.ts ----------------------------------------------------------------------------

async def test_output_then_hard_timeout_is_idle_cleanup_and_succeeds(backend, group_dir: Path) -> None:
    spec = agent(group_dir, "out({'status': 'success', 'result': 'Here is my response', 'newSessionId': "
                            "'session-123'}); time.sleep(600)")
    got = Collector()
    outcome = await run(backend, spec, got, group_dir, hard_ms=500)
    assert outcome.status == "succeeded" and outcome.error is None
    assert outcome.timed_out and outcome.had_output
    assert outcome.outputs[-1]["newSessionId"] == "session-123"
    assert got.blocks == [{"status": "success", "result": "Here is my response", "newSessionId": "session-123"}]


async def test_no_output_then_timeout_is_an_error(backend, group_dir: Path) -> None:
    got = Collector()
    outcome = await run(backend, agent(group_dir, "time.sleep(600)"), got, group_dir, hard_ms=300)
    assert outcome.status == "timed_out" and outcome.timed_out and not outcome.had_output
    assert outcome.error == "Container timed out after 300ms"
    assert got.blocks == []


async def test_output_then_exit_0_succeeds(backend, group_dir: Path) -> None:
    spec = agent(group_dir, "out({'status': 'success', 'result': 'done', 'newSessionId': 'session-456'})")
    outcome = await run(backend, spec, Collector(), group_dir)
    assert (outcome.status, outcome.exit_code, outcome.timed_out) == ("succeeded", 0, False)
    assert outcome.outputs[-1]["newSessionId"] == "session-456"


# --- further outcomes -----------------------------------------------------------------------------------------

async def test_a_non_zero_exit_reports_the_code_and_the_last_200_chars_of_stderr(backend, group_dir: Path) -> None:
    stderr = "x" * 300 + "THE END"
    outcome = await run(backend, agent(group_dir, f"sys.stderr.write({stderr!r}); sys.exit(3)"), Collector(), group_dir)
    assert outcome.status == "failed" and outcome.exit_code == 3
    assert outcome.error == f"Container exited with code 3: {stderr[-200:]}"


async def test_a_spawn_failure_is_a_failed_run_with_a_log(backend, group_dir: Path) -> None:
    spec = SandboxSpec(name="nanoclaw-family-2", image="unused", command=["/nonexistent/agent-binary"],
                       mounts=[Mount(str(group_dir), "/workspace/group", read_only=False)])
    outcome = await run(backend, spec, Collector(), group_dir)
    assert outcome.status == "failed" and outcome.exit_code is None
    assert outcome.error is not None and outcome.error.startswith("Container spawn error: ")
    assert outcome.log_path is not None and "Container spawn error" in outcome.log_path.read_text()


async def test_the_agent_reads_the_input_json_from_stdin(backend, group_dir: Path) -> None:
    spec = agent(group_dir, "out({'status': 'success', 'result': inp['prompt'] + '|' + os.getcwd()})")
    outcome = await run(backend, spec, Collector(), group_dir)
    assert outcome.outputs[0]["result"] == f"{INPUT['prompt']}|{group_dir}"


# --- the stream parser -------------------------------------------------------------------------------------------

async def test_split_markers_malformed_blocks_and_order(backend, group_dir: Path, caplog) -> None:
    code = f"""
s = {START_MARKER!r}
for piece in ('noise before ' + s[:5], s[5:12], s[12:] + '\\n{{"status": "success", "re', 'sult": "one"}}\\n',
              {END_MARKER!r}[:4], {END_MARKER!r}[4:] + '\\n'):
    sys.stdout.write(piece); sys.stdout.flush(); time.sleep(0.05)
sys.stdout.write(s + '\\n{{not json\\n' + {END_MARKER!r} + '\\n'); sys.stdout.flush()
out({{'status': 'success', 'result': 'two'}}); out({{'status': 'error', 'result': None, 'error': 'three'}})
"""
    got = Collector(delay_first=0.2)
    with caplog.at_level(logging.WARNING):
        outcome = await run(backend, agent(group_dir, code), got, group_dir)
    assert [b.get("result") or b.get("error") for b in got.blocks] == ["one", "two", "three"]
    assert outcome.outputs == got.blocks and outcome.status == "succeeded"
    assert any("malformed output block" in r.getMessage() for r in caplog.records)


def test_the_parser_keeps_partial_markers_and_drops_runaway_blocks() -> None:
    p = OutputParser(max_chars=200)
    assert p.feed("junk ---NANOCLAW_OUT") == []
    assert p.feed('PUT_START---{"a": 1}---NANOCLAW_OUTPUT_END---tail') == ['{"a": 1}']
    assert p.feed(START_MARKER + "y" * 500) == []  # unterminated and too large: dropped
    assert p.feed(END_MARKER + START_MARKER + "{}" + END_MARKER) == ["{}"]


async def test_a_failing_consumer_is_logged_and_later_blocks_still_arrive(backend, group_dir: Path, caplog) -> None:
    got = Collector(fail_first=True)
    code = "out({'result': 'a'}); out({'result': 'b'})"
    with caplog.at_level(logging.ERROR):
        outcome = await run(backend, agent(group_dir, code), got, group_dir)
    assert [b["result"] for b in got.blocks] == ["a", "b"] and outcome.status == "succeeded"
    assert any("on_output failed" in r.getMessage() for r in caplog.records)


# --- the hard timeout ---------------------------------------------------------------------------------------------

async def test_every_block_resets_the_hard_timeout(backend, group_dir: Path) -> None:
    # Four blocks 0.8 s apart (3.2 s in all) under a 2 s timeout: each gap is shorter than the timeout.
    code = "for i in range(4):\n    out({'result': str(i)}); time.sleep(0.8)\n"
    outcome = await run(backend, agent(group_dir, code), Collector(), group_dir, hard_ms=2000)
    assert outcome.status == "succeeded" and not outcome.timed_out and len(outcome.outputs) == 4


async def test_stderr_never_resets_the_hard_timeout(backend, group_dir: Path) -> None:
    code = "while True:\n    sys.stderr.write('working\\n'); sys.stderr.flush(); time.sleep(0.05)\n"
    outcome = await run(backend, agent(group_dir, code), Collector(), group_dir, hard_ms=400)
    assert outcome.status == "timed_out" and outcome.error == "Container timed out after 400ms"


async def test_cancelling_a_run_stops_its_sandbox(backend, group_dir: Path) -> None:
    got = Collector()
    spec = agent(group_dir, "out({'pid': os.getpid()}); time.sleep(600)")
    task = asyncio.create_task(run(backend, spec, got, group_dir))
    await eventually(lambda: bool(got.blocks))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = got.blocks[0]["pid"]

    def gone() -> bool:
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
    await eventually(gone)


# --- the run log --------------------------------------------------------------------------------------------------

async def test_a_normal_run_log_has_a_summary_without_the_prompt(backend, group_dir: Path) -> None:
    outcome = await run(backend, agent(group_dir, "out({'result': 'ok'})"), Collector(), group_dir)
    assert outcome.log_path is not None and outcome.log_path.parent == group_dir / "logs"
    assert re.fullmatch(r"container-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z\.log", outcome.log_path.name)
    text = outcome.log_path.read_text()
    for line in ("=== Container Run Log ===", "Group: family", "IsMain: false", "Exit Code: 0",
                 f"Prompt length: {len(INPUT['prompt'])} chars", "Session ID: new", "/workspace/group"):
        assert line in text
    for secret in ("very private words", "nats-pass-xyz", "model-token-xyz", "=== Stderr ==="):
        assert secret not in text


async def test_an_error_log_has_args_stderr_and_stdout(backend, group_dir: Path) -> None:
    code = "print('some stdout'); sys.stderr.write('bad thing happened'); sys.exit(2)"
    outcome = await run(backend, agent(group_dir, code), Collector(), group_dir)
    text = outcome.log_path.read_text() if outcome.log_path else ""
    for part in ("=== Container Args ===", "bad thing happened", "some stdout", f"{group_dir} -> /workspace/group",
                 "Error: Container exited with code 2"):
        assert part in text
    assert "very private words" not in text


async def test_a_timeout_log_is_marked_and_verbose_logs_redact_run_credentials(backend, group_dir: Path) -> None:
    outcome = await run(backend, agent(group_dir, "time.sleep(600)"), Collector(), group_dir, hard_ms=200,
                        verbose=True)
    text = outcome.log_path.read_text() if outcome.log_path else ""
    assert "=== Container Run Log (TIMEOUT) ===" in text and "very private words" in text
    assert "nats-pass-xyz" not in text and "model-token-xyz" not in text and "<redacted>" in text


async def test_stdout_kept_for_the_log_is_capped(backend, group_dir: Path) -> None:
    code = "print('y' * 5000); sys.exit(1)"
    outcome = await run(backend, agent(group_dir, code), Collector(), group_dir, max_output_bytes=1024)
    text = outcome.log_path.read_text() if outcome.log_path else ""
    assert "Stdout Truncated: true" in text and "y" * 1025 not in text


def test_log_file_name_replaces_colons_and_dots() -> None:
    from datetime import datetime, timezone
    assert log_file_name(datetime(2026, 5, 7, 10, 11, 12, 345678, tzinfo=timezone.utc)) == \
        "container-2026-05-07T10-11-12-345Z.log"


async def test_the_supervisor_class_accepts_a_dict_input(backend, group_dir: Path) -> None:
    sup = Supervisor(backend, stop_grace_s=1)
    outcome = await sup.run(agent(group_dir, "out({'result': inp['run_id']})"), INPUT, Collector(),
                            hard_timeout_ms=60_000, log_dir=None)
    assert outcome.outputs == [{"result": "r1"}] and outcome.log_path is None
