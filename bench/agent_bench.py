"""Agent-run benchmark: sandbox cold start and the bus's share of a chat turn, with the whole system in this
process (every service, the embedded nats-server with per-run users, the model proxy) and the real agent and
claude-agent-sdk CLI talking to a stub Messages API (tests/stub_anthropic.py).

    .venv/bin/python -m bench.agent_bench                      # docker and process: 20 cold runs, 50 follow-ups each
    .venv/bin/python -m bench.agent_bench --quick              # 3 cold runs, 10 follow-ups each
    .venv/bin/python -m bench.agent_bench --backend process    # one backend only
    .venv/bin/python -m bench.agent_bench --help

Per backend, on a fresh nats-server (sync_interval "always", as in production) and data directory:

1. ``--runs`` cold runs (after one unmeasured warm-up run): each in a group of its own, so each is a new
   sandbox: webhook POST → reply on the long-poll GET, then the run is closed (over NATS, as the idle timeout
   does) and awaited before the next. **Cold start** = the runner spawning the sandbox (``docker run`` or the
   agent process; timed by wrapping the backend's ``run``) → the first ``/v1/messages`` request of that run
   reaching the stub (timed in the stub's script callable). Docker also gets ``--bare`` starts of the same
   ``docker run`` argv with ``--entrypoint /bin/echo`` (spawn → first output byte) for scale.
2. ``--turns`` follow-ups into one warm run (one group; its first message starts the run, not counted).

Each message is sent ``--gap`` s (new runs only: past the previous run's end, whose NATS user revocation
reloads the server) plus a random 0..``--jitter`` s after the previous reply, so that arrivals fall at random
points of the services' 1 s pull-fetch cycles rather than at one fixed phase (which skewed a first version).

Hops come from the CloudEvents ``time`` of the run's events (each is the moment its producer built the
commit, before appending it; one clock, one process), linked by message id, turn id, run id and causation id:

- new-run turn: inbound ``MessageReceived → AgentTurnRequested``, queue ``→ RunDispatched``, dispatch
  ``→ AgentRunStarted`` (appended *before* the spawn), agent ``AgentRunStarted → AgentOutputProduced``
  (spawn, cold start, model, CLI: not bus), outbound ``AgentOutputProduced → MessageSent`` (router →
  ``OutboundMessageRequested`` → gateway → the reply stored for the GET → ``MessageSent``).
- follow-up turn: inbound ``MessageReceived → RunInputPiped``, delivery ``→ AgentInputDelivered`` (the
  runner's NATS request to the agent and its answer), agent ``AgentInputDelivered → AgentOutputProduced``,
  outbound as above.

Bus overhead of a turn = the sum of its hops except the agent's. The client's end to end (POST sent → reply
returned by the GET) and the webhook edge (the gateway accepting the POST, ``MessageReceived.timestamp`` →
the event) are reported beside it.

This is a measurement, not a test: nothing asserts on time. Results are printed and written to
``bench/results/agent-latest.md`` (git-ignored); docs/benchmarks.md quotes one run. Containers are closed
after each run; any left on the bench's network at the end are removed, and so is the network if the bench
created it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
from pydantic import SecretStr

from bench.store_bench import cores, pct, server_version
from events.envelope import CloudEvent
from events.store.jetstream import JetStreamEventStore
from events.repository import Repository
from services.cli.registry import builders
from services.harness.config import Credentials, Settings
from services.harness.host import Host, embedded_host
from services.harness.logging import setup_logging
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsserver import EmbeddedNats, free_port
from services.router.groups import RegisteredGroup
from services.runner.sandbox.base import RUN_ID_LABEL, SandboxSpec
from tests.stub_anthropic import StubAnthropic

RESULTS = Path(__file__).resolve().parent / "results"
NETWORK, SUBNET = "nanoclaw-sandbox-bench", "172.29.19.0/24"
TURN_TIMEOUT_S = 180.0
SLOW_S = 0.1  # a bus overhead (or hop) above this counts as slow in the summary


# --- the system (tests/agent_path.py `system`, with the production harness settings and sync mode) ------------

@contextlib.asynccontextmanager
async def system(workdir: Path, stub: StubAnthropic, *, backend: str, runner: dict[str, Any],
                 sync_always: bool) -> AsyncIterator[tuple[Host, JetStreamEventStore, EmbeddedNats]]:
    server = EmbeddedNats(workdir / "nats", sync_always=sync_always, auth=EmbeddedAuth(workdir / "auth.conf")).start()
    proxy_port = free_port()
    runner_cfg = {"backend": backend, "model_proxy_url": f"http://127.0.0.1:{proxy_port}", **runner}
    s = Settings(data_dir=workdir / "data", timezone="UTC", channels={"http": {"port": 0}}, services=list(builders()),
                 runner=runner_cfg, broker={"model_proxy": {"port": proxy_port, "upstream_url": stub.url}})
    creds = Credentials(anthropic_api_key=SecretStr("sk-ant-bench-not-a-key"), run_token_key=SecretStr("b" * 32))
    host = embedded_host(s, creds, builders(), server)
    try:
        await host.start()
        yield host, JetStreamEventStore(host.nc), server
    finally:
        await host.stop()
        server.stop()


def service(host: Host, name: str):
    return next(r for r in host.runners if r.service.name == name).service


async def register(store: JetStreamEventStore, chat: str) -> None:
    g = RegisteredGroup.register(jid=f"http:{chat}", name=chat.title(), folder=chat, trigger="@Andy",
                                 requires_trigger=False, is_main=False, channel="http", container_config=None,
                                 added_at="2026-01-01T00:00:00.000Z")
    await Repository(store, "bench").save(g)


# --- the stub's script: answers "ok <token>", records when each token's requests arrived -----------------------

@dataclass
class ModelLog:
    first: dict[str, float] = field(default_factory=dict)  # token → time.time() of its first /v1/messages
    count: dict[str, int] = field(default_factory=dict)
    other: int = 0  # requests without the current token
    current: str = ""  # the token of the turn in flight (turns are sequential)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> tuple:
        now = time.time()
        messages = body.get("messages") or []
        token = self.current
        if not token or token not in json.dumps(messages):
            self.other += 1
            return ("text", "ok")
        with self._lock:
            self.first.setdefault(token, now)
            self.count[token] = self.count.get(token, 0) + 1
        return ("text", f"ok {token}")


# --- the client side: webhook POST, long-poll GET ---------------------------------------------------------------

@dataclass
class Turn:
    kind: str  # "new" (starts a run) | "follow" (into the warm run)
    chat: str
    token: str
    message_id: str = ""
    posted: float = 0.0  # time.time() just before the POST
    replied: float = 0.0  # time.time() when the GET returned the reply
    run_id: str = ""


class Client:
    def __init__(self, port: int, model: ModelLog) -> None:
        self.base, self.model = f"http://127.0.0.1:{port}", model
        self.session = aiohttp.ClientSession()
        self.after: dict[str, int] = {}

    async def close(self) -> None:
        await self.session.close()

    async def turn(self, kind: str, chat: str) -> Turn:
        t = Turn(kind, chat, f"tok-{uuid.uuid4().hex[:12]}")
        self.model.current = t.token
        t.posted = time.time()
        async with self.session.post(f"{self.base}/v1/messages",
                                     json={"chat": chat, "sender": "bench", "text": f"hello {t.token}"}) as r:
            body = await r.json()
            if r.status != 202:
                raise RuntimeError(f"webhook answered {r.status}: {body}")
        t.message_id = body["id"]
        deadline = time.monotonic() + TURN_TIMEOUT_S
        while time.monotonic() < deadline:
            params = {"after": self.after.get(chat, 0), "wait": 30}
            async with self.session.get(f"{self.base}/v1/chats/{chat}/messages", params=params) as r:
                got = (await r.json())["messages"]
            now = time.time()
            for m in got:
                self.after[chat] = max(self.after.get(chat, 0), int(m["id"]))
                if t.token in m["text"]:
                    t.replied = now
                    return t
        raise TimeoutError(f"no reply for {t.token} in chat {chat} within {TURN_TIMEOUT_S:.0f} s")


# --- one backend ------------------------------------------------------------------------------------------------

@dataclass
class BackendRun:
    kind: str
    cold: list[Turn] = field(default_factory=list)
    follow: list[Turn] = field(default_factory=list)
    spawns: dict[str, float] = field(default_factory=dict)  # run id → time.time() before backend.run
    model: ModelLog = field(default_factory=ModelLog)
    events: list[CloudEvent] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)  # docker: bare container spawn → first stdout byte, s
    warmup_cold_start: float | None = None
    elapsed: float = 0.0


async def close_run(manager, run_id: str, timeout: float = 60.0) -> None:
    """Ask the run to finish (as the idle timeout does) and wait until it has; stop it if it does not."""
    await manager.close(run_id)
    deadline, stopped = time.monotonic() + timeout, False
    while run_id not in manager.finished:
        if time.monotonic() > deadline:
            run = manager.active.get(run_id)
            if stopped or run is None:
                raise TimeoutError(f"run {run_id} did not finish")
            await manager.backend.stop(run.name, 1)
            deadline, stopped = time.monotonic() + timeout, True
        await asyncio.sleep(0.05)


async def bare_container(manager, image: str, count: int) -> list[float]:
    """The runner's own ``docker run`` argv (hardening, limits, network, labels; no mounts) with
    ``--entrypoint /bin/echo``: spawn → first stdout byte, i.e. what starting the container costs before any
    agent code runs."""
    from services.runner.sandbox.docker import docker_argv

    out = []
    for i in range(count):
        spec = SandboxSpec(name=f"nanoclaw-benchbare-{int(time.time() * 1000)}-{i}", image=image,
                           labels={RUN_ID_LABEL: f"bare-{i}"})
        argv = docker_argv(spec, manager.backend.policy)
        argv[argv.index(image):argv.index(image)] = ["--entrypoint", "/bin/echo"]
        argv.append("ready")
        t0 = time.time()
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        first = await proc.stdout.read(1)
        t1 = time.time()
        _, err = await proc.communicate()
        if not first or proc.returncode != 0:
            raise RuntimeError(f"bare container failed ({proc.returncode}): {err.decode(errors='replace')[-300:]}")
        out.append(t1 - t0)
    return out


async def run_backend(kind: str, args: argparse.Namespace, image: str | None) -> BackendRun:
    res = BackendRun(kind)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix=f"nanoclaw-agent-bench-{kind}-"))
    runner: dict[str, Any] = {"stop_grace_s": 1}
    if kind == "docker":
        runner |= {"network": NETWORK, "network_subnet": SUBNET, "image": image}
    t0 = time.perf_counter()
    try:
        with StubAnthropic(script=res.model) as stub:
            async with system(workdir, stub, backend=kind, runner=runner,
                              sync_always=args.sync_always) as (host, store, _):
                manager = service(host, "runner").deps.manager
                real_run = manager.backend.run

                async def timed_run(spec: SandboxSpec):
                    res.spawns[spec.labels[RUN_ID_LABEL]] = time.time()
                    return await real_run(spec)
                manager.backend.run = timed_run  # the supervisor calls backend.run(spec)

                chats = [f"cold{i}" for i in range(args.runs + 1)] + ["warm"]
                for chat in chats:
                    await register(store, chat)
                await asyncio.sleep(1.0)  # the router's and runner's read models see the groups
                client = Client(service(host, "gateway").deps.channels["http"].port, res.model)
                try:
                    for i, chat in enumerate(chats[:-1]):
                        await asyncio.sleep(args.gap + rng.uniform(0, args.jitter))  # see --gap, --jitter
                        turn = await client.turn("new", chat)
                        turn.run_id = max(res.spawns, key=res.spawns.get)  # the run this turn started
                        await close_run(manager, turn.run_id)
                        if i == 0:  # warm-up: first start after the system came up; not in the figures
                            res.warmup_cold_start = res.model.first.get(turn.token, 0) - res.spawns[turn.run_id]
                        else:
                            res.cold.append(turn)
                        cs = res.model.first.get(turn.token, 0) - res.spawns[turn.run_id]
                        print(f"  [{kind}] run {i}{' (warm-up)' if i == 0 else ''}: cold start {cs * 1000:.0f} ms, "
                              f"reply after {(turn.replied - turn.posted) * 1000:.0f} ms", flush=True)
                    if kind == "docker" and args.bare:
                        res.bare = await bare_container(manager, image, args.bare)
                        print(f"  [{kind}] {args.bare} bare container starts: p50 "
                              f"{statistics.median(res.bare) * 1000:.0f} ms", flush=True)
                    await asyncio.sleep(args.gap + rng.uniform(0, args.jitter))
                    first = await client.turn("new", "warm")
                    first.run_id = max(res.spawns, key=res.spawns.get)
                    await asyncio.sleep(args.gap)  # the run's start (its NATS user's reload) is over
                    for i in range(args.turns):
                        await asyncio.sleep(rng.uniform(0, args.jitter))
                        res.follow.append(await client.turn("follow", "warm"))
                    e2e = [t.replied - t.posted for t in res.follow]
                    if e2e:
                        print(f"  [{kind}] {len(e2e)} follow-ups: reply after p50 "
                              f"{statistics.median(e2e) * 1000:.0f} ms", flush=True)
                    await close_run(manager, first.run_id)
                finally:
                    await client.close()
                    for run_id in list(manager.active):  # an error above: never leave a run behind
                        with contextlib.suppress(Exception):
                            await close_run(manager, run_id, timeout=15)
                await asyncio.sleep(0.5)  # the last receipts
                res.events = [ce async for c in store.read() for ce in c.events]
    finally:
        res.elapsed = time.perf_counter() - t0
        shutil.rmtree(workdir, ignore_errors=True)
    return res


# --- analysis ---------------------------------------------------------------------------------------------------

@dataclass
class Hops:
    values: dict[str, list[float]] = field(default_factory=dict)  # hop → seconds, one per turn

    def add(self, name: str, seconds: float) -> None:
        self.values.setdefault(name, []).append(seconds)


def analyse(res: BackendRun) -> tuple[Hops, Hops, list[float], list[float]]:
    """(new-run turn hops, follow-up turn hops, cold starts, AgentRunStarted → first model request), seconds."""
    by_type: dict[str, list[CloudEvent]] = {}
    by_id: dict[str, CloudEvent] = {}
    for ce in res.events:
        by_type.setdefault(ce.eventtype, []).append(ce)
        by_id[ce.id] = ce

    def one(event_type: str, pred) -> CloudEvent:
        found = [ce for ce in by_type.get(event_type, []) if pred(ce.data)]
        if not found:
            raise LookupError(f"no {event_type} matches")
        return min(found, key=lambda ce: ce.time)

    def t(ce: CloudEvent) -> float:
        return ce.time.timestamp()

    def outbound(turn: Turn, hops: Hops) -> CloudEvent:
        omr = one("OutboundMessageRequested", lambda d: d["text"] == f"ok {turn.token}")
        aop = by_id[omr.causationid]
        sent = min((ce for ce in by_type["MessageSent"] if ce.aggregateid == omr.aggregateid), key=lambda ce: ce.time)
        hops.add("outbound: AgentOutputProduced → MessageSent", t(sent) - t(aop))
        hops.add("  router: AgentOutputProduced → OutboundMessageRequested", t(omr) - t(aop))
        hops.add("  gateway: OutboundMessageRequested → MessageSent", t(sent) - t(omr))
        return aop

    new, follow, cold, started_to_model = Hops(), Hops(), [], []
    for turn in res.cold:
        mr = one("MessageReceived", lambda d: d["message_id"] == turn.message_id)
        atr = one("AgentTurnRequested", lambda d: turn.message_id in d["message_ids"])
        rd = one("RunDispatched", lambda d: atr.data["turn_id"] in d["turn_ids"])
        ars = one("AgentRunStarted", lambda d: d["run_id"] == rd.data["run_id"])
        assert rd.data["run_id"] == turn.run_id, (rd.data["run_id"], turn.run_id)
        webhook = datetime.fromisoformat(mr.data["timestamp"].replace("Z", "+00:00")).timestamp()
        model = res.model.first[turn.token]
        cold.append(model - res.spawns[turn.run_id])
        started_to_model.append(model - t(ars))
        new.add("webhook: POST accepted → MessageReceived", t(mr) - webhook)
        new.add("inbound: MessageReceived → AgentTurnRequested", t(atr) - t(mr))
        new.add("queue: AgentTurnRequested → RunDispatched", t(rd) - t(atr))
        new.add("dispatch: RunDispatched → AgentRunStarted", t(ars) - t(rd))
        aop = outbound(turn, new)
        new.add("agent: AgentRunStarted → AgentOutputProduced", t(aop) - t(ars))
        new.add("  of which spawn → first model request (cold start)", cold[-1])
        out = new.values["outbound: AgentOutputProduced → MessageSent"][-1]
        new.add("bus overhead (inbound + queue + dispatch + outbound)", (t(ars) - t(mr)) + out)
        new.add("end to end (client: POST sent → GET returned the reply)", turn.replied - turn.posted)
    for turn in res.follow:
        mr = one("MessageReceived", lambda d: d["message_id"] == turn.message_id)
        aia = one("RunInputPiped", lambda d: turn.message_id in d.get("message_ids", []))
        aid = one("AgentInputDelivered", lambda d: turn.message_id in d["message_ids"])
        webhook = datetime.fromisoformat(mr.data["timestamp"].replace("Z", "+00:00")).timestamp()
        follow.add("webhook: POST accepted → MessageReceived", t(mr) - webhook)
        follow.add("inbound: MessageReceived → RunInputPiped", t(aia) - t(mr))
        follow.add("delivery: RunInputPiped → AgentInputDelivered", t(aid) - t(aia))
        aop = outbound(turn, follow)
        follow.add("agent: AgentInputDelivered → AgentOutputProduced", t(aop) - t(aid))
        follow.add("  RunInputPiped → model request at the stub", res.model.first[turn.token] - t(aia))
        out = follow.values["outbound: AgentOutputProduced → MessageSent"][-1]
        follow.add("bus overhead (inbound + delivery + outbound)", (t(aid) - t(mr)) + out)
        follow.add("end to end (client: POST sent → GET returned the reply)", turn.replied - turn.posted)
    return new, follow, cold, started_to_model


def f_ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if abs(seconds) >= 0.1 else f"{seconds * 1000:.1f}"


def stats(values: list[float], qs: tuple[float, ...]) -> str:
    return " / ".join(f_ms(pct(values, q)) if q < 1 else f_ms(max(values)) for q in qs) if values else "n/a"


HOP_ORDER_NEW = ["webhook: POST accepted → MessageReceived", "inbound: MessageReceived → AgentTurnRequested",
                 "queue: AgentTurnRequested → RunDispatched", "dispatch: RunDispatched → AgentRunStarted",
                 "agent: AgentRunStarted → AgentOutputProduced",
                 "  of which spawn → first model request (cold start)",
                 "outbound: AgentOutputProduced → MessageSent",
                 "  router: AgentOutputProduced → OutboundMessageRequested",
                 "  gateway: OutboundMessageRequested → MessageSent",
                 "bus overhead (inbound + queue + dispatch + outbound)",
                 "end to end (client: POST sent → GET returned the reply)"]
HOP_ORDER_FOLLOW = ["webhook: POST accepted → MessageReceived", "inbound: MessageReceived → RunInputPiped",
                    "delivery: RunInputPiped → AgentInputDelivered",
                    "agent: AgentInputDelivered → AgentOutputProduced",
                    "  RunInputPiped → model request at the stub",
                    "outbound: AgentOutputProduced → MessageSent",
                    "  router: AgentOutputProduced → OutboundMessageRequested",
                    "  gateway: OutboundMessageRequested → MessageSent",
                    "bus overhead (inbound + delivery + outbound)",
                    "end to end (client: POST sent → GET returned the reply)"]


def hop_table(title: str, order: list[str], per_backend: dict[str, Hops], qs: tuple[float, ...],
              head: str) -> list[str]:
    kinds = list(per_backend)
    out = [f"### {title}", "", "| Hop (ms) | " + " | ".join(f"{k} {head}" for k in kinds) + " |",
           "|---|" + "---|" * len(kinds)]
    for name in order:
        cells = [stats(per_backend[k].values.get(name, []), qs) for k in kinds]
        label = name.replace("  ", "&nbsp;&nbsp;↳ ", 1) if name.startswith("  ") else name
        bold = name.startswith("bus overhead")
        out.append(f"| {'**' + label + '**' if bold else label} | "
                   + " | ".join(f"**{c}**" if bold else c for c in cells) + " |")
    return out


def share(h: Hops, bus: str) -> list[float]:
    e2e = h.values.get("end to end (client: POST sent → GET returned the reply)", [])
    return [b / e for b, e in zip(h.values.get(bus, []), e2e) if e > 0]


# --- conditions and main ----------------------------------------------------------------------------------------

def docker_version() -> str:
    try:
        out = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True,
                             timeout=20)
        return out.stdout.strip() or out.stderr.strip()
    except Exception as exc:  # reported, not fatal
        return f"unknown ({exc})"


def image_size(image: str) -> str:
    out = subprocess.run(["docker", "image", "inspect", image, "--format", "{{.Size}}"], capture_output=True, text=True)
    return f"{int(out.stdout.strip()) / 1e6:.0f} MB" if out.returncode == 0 else "?"


def cleanup_docker(network_existed: bool) -> list[str]:
    """Remove containers left on the bench's network (there should be none), then the network if we made it."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=nanoclaw.network={NETWORK}"],
                         capture_output=True, text=True)
    left = out.stdout.split()
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
    if not network_existed:
        subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)
    return left


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.agent_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 cold runs and 10 follow-ups per backend")
    p.add_argument("--backend", choices=["docker", "process", "both"], default="both")
    p.add_argument("--runs", type=int, default=20, help="measured cold runs per backend (after 1 warm-up)")
    p.add_argument("--turns", type=int, default=50, help="follow-up turns into one warm run per backend")
    p.add_argument("--bare", type=int, default=None, help="bare container starts (docker; default = --runs)")
    p.add_argument("--gap", type=float, default=1.5,
                   help="seconds between a run's end and the next run's message: more than the services' 1 s "
                        "fetch window, so the previous run's NATS user revocation (a server reload) is not measured")
    p.add_argument("--jitter", type=float, default=1.0,
                   help="a random pause of 0..JITTER s before every message, so arrivals fall at random points of "
                        "the services' fetch cycles instead of a fixed phase")
    p.add_argument("--seed", type=int, default=1, help="for the random pauses")
    p.add_argument("--no-sync-always", dest="sync_always", action="store_false",
                   help="NATS default sync_interval instead of fsync on every write")
    p.add_argument("--out", type=Path, default=RESULTS / "agent-latest.md", help="markdown results file")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.turns = 3, 10
    if args.bare is None:
        args.bare = args.runs
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("WARNING")
    kinds = ["docker", "process"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    conditions = [("date (UTC)", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")), ("cores", cores()),
                  ("load average (1/5/15 min) at start", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
                  ("python", f"{platform.python_implementation()} {platform.python_version()} ({platform.machine()})"),
                  ("nats-server / nats-py", f"{server_version()} / {importlib.metadata.version('nats-py')}"),
                  ("claude-agent-sdk", importlib.metadata.version("claude-agent-sdk")),
                  ("sync mode", 'sync_interval "always"' if args.sync_always else "default sync_interval")]
    print("conditions:", *(f"  {k}: {v}" for k, v in conditions), sep="\n", flush=True)
    image, network_existed = None, True
    if "docker" in kinds:
        from sandbox.image import build_agent_image

        image = build_agent_image(lambda line: None)
        network_existed = subprocess.run(["docker", "network", "inspect", NETWORK], capture_output=True).returncode == 0
        conditions += [("docker engine", docker_version()), ("agent image", f"{image} ({image_size(image)})")]
        print(f"  docker engine: {docker_version()}\n  agent image: {image}", flush=True)
    results: dict[str, BackendRun] = {}
    try:
        for kind in kinds:
            print(f"{kind}:", flush=True)
            results[kind] = asyncio.run(run_backend(kind, args, image))
    finally:
        if "docker" in kinds:
            left = cleanup_docker(network_existed)
            if left:
                print(f"removed {len(left)} container(s) left on {NETWORK}", flush=True)
    conditions.append(("load average (1/5/15 min) at end", " / ".join(f"{x:.2f}" for x in os.getloadavg())))
    elapsed = time.perf_counter() - started

    analysed = {k: analyse(r) for k, r in results.items()}
    lines = ["## Conditions", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in conditions),
             "", "## Sandbox cold start", "",
             "Spawn (the runner calling the backend's `run`: `docker run …` or the agent process) → the run's "
             f"first `/v1/messages` request at the stub; {args.runs} runs per backend, each a new sandbox, after one "
             "unmeasured warm-up run.", "",
             "| ms | p50 | p90 | max | warm-up run |", "|---|---|---|---|---|"]
    for k, (_, _, cold, started_to_model) in analysed.items():
        warm = results[k].warmup_cold_start
        lines.append(f"| {k}: spawn → first model request | **{f_ms(pct(cold, .5))}** | {f_ms(pct(cold, .9))} | "
                     f"{f_ms(max(cold))} | {f_ms(warm) if warm else '?'} |")
        lines.append(f"| {k}: AgentRunStarted → first model request | {f_ms(pct(started_to_model, .5))} | "
                     f"{f_ms(pct(started_to_model, .9))} | {f_ms(max(started_to_model))} | |")
    if "docker" in results and results["docker"].bare:
        bare = results["docker"].bare
        lines.append("| docker, bare: same `docker run` argv with `--entrypoint /bin/echo`, spawn → first output "
                     "byte | "
                     f"{f_ms(pct(bare, .5))} | {f_ms(pct(bare, .9))} | {f_ms(max(bare))} | |")
    if len(analysed) == 2:
        d, p = pct(analysed["docker"][2], .5), pct(analysed["process"][2], .5)
        lines += ["", f"docker / process cold start (p50s): **{d / p:.2f}×** (+{f_ms(d - p)} ms)."]
    lines += ["", "## Chat turns: hops from the events' CloudEvents `time`", ""]
    lines += hop_table(f"New-run turns ({args.runs} per backend, the cold runs above)", HOP_ORDER_NEW,
                       {k: a[0] for k, a in analysed.items()}, (.5, .9, 1.0), "p50 / p90 / max")
    lines += [""]
    lines += hop_table(f"Follow-up turns into a warm run ({args.turns} per backend)", HOP_ORDER_FOLLOW,
                       {k: a[1] for k, a in analysed.items()}, (.5, .99), "p50 / p99")
    lines += [""]
    bus_new = "bus overhead (inbound + queue + dispatch + outbound)"
    bus_fol = "bus overhead (inbound + delivery + outbound)"
    for k, (new, follow, _, _) in analysed.items():
        s_new, s_fol = share(new, bus_new), share(follow, bus_fol)
        slow = [f"{sum(v > SLOW_S for v in h.values.get(name, []))} of {len(h.values.get(name, []))} {what}"
                for h, name, what in ((new, bus_new, "new-run"), (follow, bus_fol, "follow-up")) if h.values]
        hops = [f"{what} {name.split(':')[0]} {sum(v > SLOW_S for v in vals)}"
                for h, what in ((new, "new-run"), (follow, "follow-up")) for name, vals in h.values.items()
                if ":" in name and not name.startswith(("agent", "end to end", "webhook", " "))
                and sum(v > SLOW_S for v in vals)]
        lines.append(f"- {k}: bus overhead / end to end, median per turn: new-run {statistics.median(s_new):.1%}"
                     + (f", follow-up {statistics.median(s_fol):.1%}" if s_fol else "")
                     + f". Bus overhead over {SLOW_S * 1000:.0f} ms in {', '.join(slow)} turns"
                     + (f" (hops over {SLOW_S * 1000:.0f} ms: {', '.join(hops)})" if hops else "")
                     + f". {results[k].elapsed:.0f} s for this backend.")
    command = "python -m bench.agent_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (f"# Agent-run benchmark\n\n`{command.strip()}` — {elapsed:.0f} s in all. One run on a shared machine: "
            "read these as magnitudes.\n\n" + "\n".join(lines) + "\n")
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
