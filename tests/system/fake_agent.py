"""``python -m tests.system.fake_agent``: a light agent that speaks the container protocol of ``sandbox.agent``
(stdin ``ContainerInput``, stdout markers, follow-ups and ``close`` as NATS requests on the run's input subject)
and sends each turn to the model proxy as one Messages API request, for the system and chaos tests.

Why not the real agent: the campaign runs hundreds of runs on 2 cores; the Claude CLI costs seconds and
hundreds of MB per run, and its requests repeat the whole history, so "which message reached the model how
often" could not be read off the stub's requests. This agent sends exactly the new turn's text once.

Behaviour per run, from ``.fake-agent.json`` in the group folder (the cwd), written by the test before traffic::

    {"latency_s": [0.0, 2.5, ...], "fail": [false, true, ...]}

Run *k* of the group (counted in ``.fake-agent.runs`` under an flock, so concurrent or restarted runs each
take the next entry) waits ``latency_s[k]`` before it connects to NATS (an agent still starting, as a
container is) and, when ``fail[k]``, ends with an error marker before asking the model. Past the lists: no
wait, no failure. A failed model request also ends the run with an error marker (exit 1), as the real agent
does; a refused connection (the broker restarting) is tried again for a while first, as the Claude CLI does.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import signal
import sys
from pathlib import Path

import aiohttp
import nats

from sandbox.agent.protocol import ContainerInput, InputError, MarkerWriter, parse_input

log = logging.getLogger("fake_agent")

CONTROL, COUNTER = ".fake-agent.json", ".fake-agent.runs"
SESSION = "fake-session"


def next_behaviour(folder: Path) -> tuple[float, bool]:
    """``(start latency s, fail)`` for this run: the next entry of the group's control file."""
    try:
        control = json.loads((folder / CONTROL).read_text())
    except (OSError, ValueError):
        control = {}
    with open(folder / COUNTER, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        k = len(f.read())
        f.write(".")
    latencies, fails = control.get("latency_s", []), control.get("fail", [])
    return (float(latencies[k]) if k < len(latencies) else 0.0), (bool(fails[k]) if k < len(fails) else False)


CONNECT_RETRY_S = 15.0


async def ask_model(session: aiohttp.ClientSession, inp: ContainerInput, text: str) -> str:
    """:func:`ask_model_once`, tried again for up to ``CONNECT_RETRY_S`` while the proxy refuses connections
    (the broker restarting), as the Claude CLI retries connection errors. Only then: a request that was sent
    is never repeated, since that could show the model a message twice, which is what the campaign counts."""
    deadline = asyncio.get_running_loop().time() + CONNECT_RETRY_S
    while True:
        try:
            return await ask_model_once(session, inp, text)
        except aiohttp.ClientConnectorError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def ask_model_once(session: aiohttp.ClientSession, inp: ContainerInput, text: str) -> str:
    """One Messages API request through the proxy with the run's token; the streamed text back.

    Raises: aiohttp.ClientError / RuntimeError on any failure."""
    body = {"model": "claude-fake", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": text}]}
    async with session.post(f"{inp.model.base_url}/v1/messages", json=body,
                            headers={"x-api-key": inp.model.token, "anthropic-version": "2023-06-01"}) as r:
        if r.status != 200:
            raise RuntimeError(f"model proxy answered {r.status}: {(await r.text())[:200]}")
        out = []
        async for raw in r.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                data = json.loads(line[5:])
                if data.get("type") == "content_block_delta" and data["delta"].get("type") == "text_delta":
                    out.append(data["delta"]["text"])
        return "".join(out)


class Agent:
    def __init__(self, inp: ContainerInput, out: MarkerWriter) -> None:
        self.inp, self.out = inp, out
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.busy = self.closing = False
        self.stopped = asyncio.Event()
        self.wake = asyncio.Event()

    async def on_input(self, msg) -> None:
        if not msg.reply:
            return
        try:
            req = json.loads(msg.data)
        except ValueError:
            req = {}
        kind = req.get("type") if isinstance(req, dict) else None
        reply = {"ok": True}
        if self.closing:
            reply = {"ok": True} if kind == "close" else {"ok": False, "error": "closing"}
        elif kind == "message" and isinstance(req.get("text"), str):
            self.queue.put_nowait(req["text"])
            self.wake.set()
        elif kind == "close":
            self.closing = True
            if not self.busy and self.queue.empty():
                self.stopped.set()
            self.wake.set()
        else:
            reply = {"ok": False, "error": "bad input"}
        await msg.respond(json.dumps(reply).encode())

    async def serve(self, session: aiohttp.ClientSession) -> None:
        """Turns until closed: every queued text joins one turn ("\\n", as the real agent's stream does)."""
        while not self.stopped.is_set():
            if self.queue.empty():
                self.wake.clear()
                if self.closing:
                    return
                await self.wake.wait()
                continue
            parts = []
            while not self.queue.empty():
                parts.append(self.queue.get_nowait())
            self.busy = True
            result = await ask_model(session, self.inp, "\n".join(parts))
            self.out.success(result or None, SESSION)
            self.busy = False
            if self.closing:
                return  # close during a query: no further marker (sandbox/agent/runner.py)
            if self.queue.empty():
                self.out.success(None, SESSION, idle=True)  # the query is over


async def run(inp: ContainerInput, out: MarkerWriter) -> int:
    latency, fail = next_behaviour(Path.cwd())
    await asyncio.sleep(latency)
    agent = Agent(inp, out)
    agent.queue.put_nowait(inp.prompt)
    nc = await nats.connect([u.strip() for u in inp.nats.url.split(",")], user=inp.nats.user,
                            password=inp.nats.password, inbox_prefix=inp.nats.inbox_prefix,
                            name=f"agent-{inp.run_id}", connect_timeout=2, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.25)
    try:
        await nc.subscribe(inp.nats.input_subject, cb=agent.on_input)
        await nc.flush()
        if fail:
            out.error("injected agent failure", SESSION)
            return 1
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            await agent.serve(session)
        return 0
    except Exception as exc:
        log.exception("run failed")
        out.error(f"fake agent: {exc or type(exc).__name__}", SESSION)
        return 1
    finally:
        try:
            async with asyncio.timeout(5):
                await nc.close()
        except Exception:
            pass


def main() -> int:
    out = MarkerWriter.take_stdout()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    try:
        inp = parse_input(sys.stdin.buffer.read())
    except InputError as exc:
        out.error(f"invalid input: {exc}", None)
        return 1

    async def guarded() -> int:
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await run(inp, out)
        except asyncio.CancelledError:
            return 128 + signal.SIGTERM
    return asyncio.run(guarded())


if __name__ == "__main__":
    sys.exit(main())
