"""The fault injector: SIGKILL a random service at random moments and start it again, and restart the
nats-server once (SIGKILL, then the same configuration and store)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from tests.system.cluster import SERVICES, Cluster


@dataclass
class Fault:
    at: float  # seconds after the campaign's start
    target: str  # a service name or "nats-server"
    down_s: float


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def random(cls, rng: random.Random, *, kills: int, duration_s: float, nats_restarts: int = 1,
               targets: tuple[str, ...] = SERVICES) -> "FaultPlan":
        """``kills`` service kills and ``nats_restarts`` server restarts at uniform moments of the first
        ``duration_s`` s; each target stays down 0.2-2 s (the server 1 s)."""
        faults = [Fault(rng.uniform(0.05, 0.95) * duration_s, rng.choice(targets), rng.uniform(0.2, 2.0))
                  for _ in range(kills)]
        faults += [Fault(rng.uniform(0.3, 0.7) * duration_s, "nats-server", 1.0) for _ in range(nats_restarts)]
        return cls(sorted(faults, key=lambda f: f.at))


async def inject(cluster: Cluster, plan: FaultPlan, log: list[str],
                 windows: list[tuple[float, float]] | None = None) -> None:
    """Carry out ``plan`` (one fault after the other), appending a line per fault to ``log`` and, to
    ``windows``, its wall-clock ``(killed at, started again at)``."""
    start = time.monotonic()
    for f in plan.faults:
        await asyncio.sleep(max(0.0, start + f.at - time.monotonic()))
        killed_at = time.time()
        if f.target == "nats-server":
            cluster.nats.kill()
            await asyncio.sleep(f.down_s)
            await asyncio.to_thread(cluster.nats.start)
        else:
            cluster.kill_service(f.target)
            await asyncio.sleep(f.down_s)
            cluster.start_service(f.target)
        log.append(f"{time.monotonic() - start:7.2f}s kill {f.target} (down {f.down_s:.1f}s)")
        if windows is not None:
            windows.append((killed_at, time.time()))
