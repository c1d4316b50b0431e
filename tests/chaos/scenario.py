"""One scenario on the real services: start the cluster (tests/system/cluster.py), register the chats, set each
chat's agent behaviour, send the traffic while the faults happen, wait until every accepted message is answered
(or the drain time is over), then check (tests/chaos/check.py) and run ``nanoclaw audit verify``.

Shared by the chaos campaign (tests/chaos/campaign.py) and the lifecycle property test (tests/lifecycle/).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from events.store.jetstream import JetStreamEventStore
from services.projector.service import read_model_path
from tests.chaos.check import Report, check, read_log
from tests.chaos.faults import FaultPlan, inject
from tests.support import projected
from tests.system.cluster import Cluster, Options
from tests.system.fake_agent import CONTROL
from tests.system.model import EchoModel, ids_in
from tests.system.traffic import Burst, Ledger, send

MODEL_TIME_S = 1.0
"""Allowance for one model request through the proxy on a loaded 2-core machine (the stub answers at once)."""
RESTART_S = 5.0
"""Allowance for a service process to start again and resubscribe (Python start-up on a loaded 2-core machine)."""
PROMPT_CAP = 10
"""``router.max_messages_per_prompt``'s default: the most messages one turn shows the model."""


@dataclass
class Scenario:
    plan: dict[str, list[Burst]]  # chat → bursts
    agents: dict[str, dict] = field(default_factory=dict)  # chat → {"latency_s": [...], "fail": [...]}
    faults: FaultPlan = field(default_factory=FaultPlan)
    options: Options = field(default_factory=Options)
    drain_s: float = 60.0  # longest wait after the traffic for the last answers
    stuck_after_s: float = 10.0

    def agent_time_s(self) -> dict[str, float]:
        """Per chat, the longest an answer may legitimately take: the slowest agent start plus model time; when
        a run of the chat fails, once more plus the queue's first retry delay (one failure in a row at most);
        plus one model time per further turn a burst above the prompt cap needs."""
        out = {}
        for chat in self.plan:
            behaviour = self.agents.get(chat, {})
            slowest = max(behaviour.get("latency_s") or [0.0]) + MODEL_TIME_S
            retry = slowest + self.options.base_retry_ms / 1000 if any(behaviour.get("fail") or []) else 0.0
            # A burst larger than the prompt cap is answered in several turns, one model request each.
            turns = math.ceil(max((n for _, n in self.plan[chat]), default=1) / PROMPT_CAP)
            out[chat] = slowest + retry + (turns - 1) * MODEL_TIME_S
        return out


@dataclass
class Outcome:
    report: Report
    audit_ok: bool
    audit_output: str
    fault_log: list[str]
    crashed: dict[str, int]  # services that exited by themselves → status
    wall_s: float

    def summary(self) -> str:
        lines = [self.report.table(), f"audit verify: {'clean' if self.audit_ok else 'NOT clean'}",
                 f"wall time: {self.wall_s:.0f}s; faults: {len(self.fault_log)}; services that exited by "
                 f"themselves: {self.crashed or 'none'}",
                 f"diagnosis: never shown to the model {self.report.never_to_model}, failure notices "
                 f"{self.report.notices}, abandoned runs {self.report.abandoned_runs}, dead-lettered "
                 f"{self.report.dead_lettered}"]
        lines += [f"  {col}: {', '.join(ex)}" for col, ex in self.report.examples.items()]
        if not self.audit_ok:
            lines.append(self.audit_output[-3000:])
        return "\n".join(lines)


async def _replied(cluster: Cluster) -> set[str]:
    nc = await cluster.admin()
    try:
        view = await read_log(JetStreamEventStore(nc))
    finally:
        await nc.close()
    out: set[str] = set()
    for o in view.outbound.values():
        if o.sent_at is not None:
            out.update(ids_in(o.text) if o.text.startswith("re ") else [f"notice:{o.chat}"])
    return out


async def _tick(ledger: Ledger, fault_log: list[str], progress, every_s: float = 60.0) -> None:
    """A progress line every minute while the traffic runs (a long campaign takes an hour)."""
    while True:
        await asyncio.sleep(every_s)
        progress(f"{len(ledger.accepted)} accepted, {len(fault_log)} faults so far")


async def run(scenario: Scenario, root: Path, *, progress=print) -> Outcome:
    started = time.monotonic()
    with EchoModel() as model:
        cluster = Cluster(root, model.url, scenario.options)
        try:
            await cluster.start()
            await cluster.register(list(scenario.plan))
            for chat, behaviour in scenario.agents.items():
                cluster.group_dir(chat).mkdir(parents=True, exist_ok=True)
                (cluster.group_dir(chat) / CONTROL).write_text(json.dumps(behaviour))
            ledger, fault_log, windows = Ledger(), [], []
            faults = asyncio.create_task(inject(cluster, scenario.faults, fault_log, windows))
            ticker = asyncio.create_task(_tick(ledger, fault_log, progress))
            try:
                await send(cluster.http_port, scenario.plan, ledger)
                await faults
            finally:
                ticker.cancel()
            progress(f"traffic done: {len(ledger.accepted)} accepted, {ledger.refused} attempts refused; "
                     f"{len(fault_log)} faults")
            deadline = time.monotonic() + scenario.drain_s
            while time.monotonic() < deadline:
                replied = await _replied(cluster)
                pending = [a for a in ledger.accepted if a.token not in replied
                           and f"notice:{a.chat}" not in replied]
                if not pending:
                    break
                await asyncio.sleep(1.0)
            nc = await cluster.admin()
            try:
                store = JetStreamEventStore(nc)
                view = await read_log(store, root / "timeline.jsonl")
            finally:
                await nc.close()
            (root / "ledger.jsonl").write_text("".join(json.dumps(vars(a)) + "\n" for a in ledger.accepted))
            (root / "model.jsonl").write_text("".join(json.dumps({"t": t, "ids": ids}) + "\n"
                                                      for t, ids in model.arrivals))
            report = check(ledger, [ids for _, ids in model.arrivals], view, agent_time_s=scenario.agent_time_s(),
                           stuck_after_s=scenario.stuck_after_s, faults=windows,
                           recovery_s=scenario.options.ack_wait_s + RESTART_S)
            crashed = cluster.exited()
            # The audit compares the projector's read model with a rebuild from the log: nothing may append
            # meanwhile (an idle timer firing would make them differ), so every other service stops first.
            await asyncio.to_thread(cluster.stop_services, [n for n in cluster.procs if n != "projections"])
            nc = await cluster.admin()
            try:
                last = await JetStreamEventStore(nc).last_seq()
            finally:
                await nc.close()
            db = read_model_path(cluster.data_dir("projections"))
            caught_up = time.monotonic() + 30
            while not projected(db, last) and time.monotonic() < caught_up:
                await asyncio.sleep(0.2)
            audit = await asyncio.to_thread(cluster.audit_verify)
        finally:
            await asyncio.to_thread(cluster.stop)
    return Outcome(report, audit.returncode == 0, audit.stdout + audit.stderr, fault_log, crashed,
                   time.monotonic() - started)
