"""``python -m sandbox.agent``: read the ContainerInput from stdin, run, exit 0 (done/closed) or 1 (failed).

stdout carries only output markers (``protocol.MarkerWriter.take_stdout`` moves everything else to stderr);
logs go to stderr at ``NANOCLAW_LOG_LEVEL`` (default INFO). Bad stdin → an error marker naming the problem
and exit 1. SIGTERM → the Claude CLI child is stopped too, exit 143 (no marker: the runner asked for it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from .protocol import ContainerInput, InputError, MarkerWriter, parse_input

log = logging.getLogger("sandbox.agent")


async def _run(inp: ContainerInput, out: MarkerWriter) -> int:
    # Imported only now: claude_agent_sdk takes 1-2 s to import, and bad input should fail fast.
    from .runner import run

    # Cancel on SIGTERM so the finally blocks stop the CLI child: under the process backend nothing else
    # would (in a container the whole sandbox goes anyway).
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run(inp, out)
    except asyncio.CancelledError:
        log.info("terminated (SIGTERM)")
        return 128 + signal.SIGTERM


def main() -> int:
    out = MarkerWriter.take_stdout()
    level = getattr(logging, os.environ.get("NANOCLAW_LOG_LEVEL", "INFO").upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        inp = parse_input(sys.stdin.buffer.read())
    except InputError as exc:
        log.error("bad input: %s", exc)
        out.error(f"invalid input: {exc}", None)
        return 1
    log.info("run %s for %s (main=%s, task=%s, session=%s)", inp.run_id, inp.group_folder, inp.is_main,
             inp.is_scheduled_task, inp.session_id or "new")
    try:
        return asyncio.run(_run(inp, out))
    except Exception as exc:  # e.g. the SDK cannot be imported: still answer in the protocol
        log.exception("agent failed to start")
        out.error(f"agent failed to start: {exc}", inp.session_id)
        return 1


if __name__ == "__main__":
    sys.exit(main())
