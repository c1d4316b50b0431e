"""The fault campaign: ``python -m tests.chaos.campaign --messages N --groups G --kills K --rate R --seed S --dir D``.

N messages over G no-trigger webhook chats at about R messages/s (in bursts of 1-5), agents that take 0-3 s to
start, K SIGKILLs of random services (each started again 0.2-2 s later) and one nats-server restart, all at
random moments of the traffic; then the checker's columns and ``nanoclaw audit verify``. The same seed gives
the same plan (traffic, agent latencies, fault moments and targets); timing on the machine still varies.
Exit status 0 only when every column is 0 and the audit is clean. docs/reliability.md has the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
from pathlib import Path

from tests.chaos.faults import FaultPlan
from tests.chaos.scenario import Outcome, Scenario, run
from tests.system.cluster import SERVICES, Options
from tests.system.traffic import Burst, chat_name


def plan_traffic(rng: random.Random, messages: int, groups: int, rate: float) -> dict[str, list[Burst]]:
    """Per chat, bursts of 1-5 messages whose gaps spread the chat's share over ``messages / rate`` seconds."""
    duration = messages / rate
    shares = [0] * groups
    for _ in range(messages):
        shares[rng.randrange(groups)] += 1
    plan: dict[str, list[Burst]] = {}
    for g, share in enumerate(shares):
        bursts, left = [], share
        while left:
            size = min(left, rng.randint(1, 5))
            bursts.append((rng.uniform(0.5, 1.5) * duration * size / max(share, 1), size))
            left -= size
        plan[chat_name(g)] = bursts
    return plan


def plan_agents(rng: random.Random, chats: list[str], runs: int, fail_rate: float) -> dict[str, dict]:
    return {chat: {"latency_s": [round(rng.uniform(0, 3), 2) for _ in range(runs)],
                   "fail": [rng.random() < fail_rate for _ in range(runs)]} for chat in chats}


def scenario(*, messages: int, groups: int, kills: int, rate: float, seed: int, fail_rate: float = 0.0,
             nats_restarts: int = 1, drain_s: float = 60.0) -> Scenario:
    rng = random.Random(seed)
    plan = plan_traffic(rng, messages, groups, rate)
    agents = plan_agents(rng, list(plan), runs=max(8, messages // groups + 8), fail_rate=fail_rate)
    faults = FaultPlan.random(rng, kills=kills, duration_s=messages / rate, nats_restarts=nats_restarts,
                              targets=SERVICES)
    return Scenario(plan, agents, faults, Options(), drain_s=drain_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.campaign", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--groups", type=int, default=20)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--rate", type=float, default=3.0, help="messages per second, all chats together")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", type=Path, required=True, help="working directory (emptied first)")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share of agent runs that fail at start")
    p.add_argument("--nats-restarts", type=int, default=1)
    p.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last answers")
    p.add_argument("--json", type=Path, help="write the outcome here as JSON")
    a = p.parse_args(argv)
    if a.messages < 1 or a.groups < 1 or a.groups > 99 or a.rate <= 0 or a.kills < 0:
        p.error("--messages ≥ 1, 1 ≤ --groups ≤ 99, --rate > 0, --kills ≥ 0")
    shutil.rmtree(a.dir, ignore_errors=True)
    a.dir.mkdir(parents=True)
    sc = scenario(messages=a.messages, groups=a.groups, kills=a.kills, rate=a.rate, seed=a.seed,
                  fail_rate=a.fail_rate, nats_restarts=a.nats_restarts, drain_s=a.drain)
    outcome: Outcome = asyncio.run(run(sc, a.dir, progress=lambda s: print(s, flush=True)))
    print("\n".join(outcome.fault_log))
    print(outcome.summary())
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                      "report": outcome.report.as_dict(), "audit_ok": outcome.audit_ok,
                                      "faults": outcome.fault_log, "crashed": outcome.crashed,
                                      "wall_s": outcome.wall_s}, indent=2))
    return 0 if outcome.report.clean and outcome.audit_ok and not outcome.crashed else 1


if __name__ == "__main__":
    sys.exit(main())
