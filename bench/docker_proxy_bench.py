"""Docker API proxy benchmark: what the compose runner pays for reaching the engine through
``deploy/dockerproxy`` instead of the socket.

    .venv/bin/python -m bench.docker_proxy_bench            # 20 sandbox starts and 50 list calls per path
    .venv/bin/python -m bench.docker_proxy_bench --quick    # 5 and 10

For each path (the engine's socket directly, then the proxy on loopback in this process), alternating so both
see the same machine load:

1. **sandbox start**: the runner's own hardened ``docker run -i --rm`` argv (``docker_argv``: limits, network,
   labels, a bind mount) of ``nanoclaw-base:bookworm`` running ``cat``; stdin gets one line and EOF. Timed from
   spawn to the process's exit: create, attach, wait, start, the run, removal. Through the proxy every one of
   these calls is checked, and the create body and each container-targeted call are checked and inspected.
2. **list**: ``docker ps -a --filter label=nanoclaw.role=agent`` (``GET /containers/json``), the runner's
   orphan scan, spawn to exit.

Reports p50/p90 per path and the proxy/direct ratio of the p50s, printed and written to
``bench/results/docker-proxy-latest.md`` (git-ignored). Nothing asserts on time. The bench's network and bind
root are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker

from deploy.dockerproxy.policy import ProxyPolicy
from deploy.dockerproxy.server import DockerProxy
from deploy.images.base import BASE_IMAGE
from services.runner.config import RunnerConfig
from services.runner.policy import policy_from_config
from services.runner.sandbox.base import Mount, SandboxSpec
from services.runner.sandbox.docker import docker_argv

RESULTS = Path(__file__).parent / "results" / "docker-proxy-latest.md"


def _timed(argv: list[str], host: str | None, stdin: bytes = b"") -> float:
    """Seconds from spawn to exit of ``argv`` (``docker`` first) against ``host`` (None: the default socket)."""
    full = [argv[0], *(["-H", host] if host else []), *argv[1:]]
    started = time.perf_counter()
    done = subprocess.run(full, input=stdin, capture_output=True, timeout=120)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(full[:6])} … exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def _row(name: str, direct: list[float], proxied: list[float]) -> str:
    def q(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=10)[int(p * 10) - 1] * 1000 if len(xs) >= 2 else xs[0] * 1000

    d50, p50 = statistics.median(direct) * 1000, statistics.median(proxied) * 1000
    return (f"| {name} | {len(direct)} | {d50:.0f} | {q(direct, 0.9):.0f} | {p50:.0f} | {q(proxied, 0.9):.0f} "
            f"| {p50 / d50:.2f}× |")


async def main(starts: int, lists: int) -> str:
    client = docker.from_env()
    client.images.get(BASE_IMAGE)  # docker.errors.ImageNotFound: build it first (tests do, or deploy/images)
    network = f"nanoclaw-proxy-bench-{uuid.uuid4().hex[:6]}"
    net = client.networks.create(network, driver="bridge", internal=True)
    with tempfile.TemporaryDirectory() as root:
        proxy = DockerProxy(ProxyPolicy(network=network, images=("nanoclaw-base",), bind_roots=(root,)))
        server = await proxy.start("127.0.0.1", 0)
        host = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        policy = policy_from_config(RunnerConfig(network=network, image=BASE_IMAGE))
        results: dict[str, dict[str, list[float]]] = {"start": {"direct": [], "proxy": []},
                                                      "list": {"direct": [], "proxy": []}}
        try:
            for i in range(starts):
                for path, via in (("direct", None), ("proxy", host)):
                    spec = SandboxSpec(name=f"bench-{uuid.uuid4().hex[:10]}", image=BASE_IMAGE, workdir=None,
                                       mounts=[Mount(root, "/workspace/group", read_only=True)], command=["cat"])
                    # In a thread: the proxy serves on this event loop.
                    results["start"][path].append(
                        await asyncio.to_thread(_timed, docker_argv(spec, policy), via, b"hello\n"))
            for i in range(lists):
                for path, via in (("direct", None), ("proxy", host)):
                    results["list"][path].append(await asyncio.to_thread(
                        _timed, ["docker", "ps", "-a", "--filter", "label=nanoclaw.role=agent"], via))
        finally:
            await proxy.close()
            net.remove()
    lines = ["| call | n | direct p50 ms | direct p90 ms | proxy p50 ms | proxy p90 ms | proxy/direct p50 |",
             "|---|---|---|---|---|---|---|",
             _row("sandbox start (`docker run -i --rm`, hardened, `cat`)", results["start"]["direct"],
                  results["start"]["proxy"]),
             _row("list (`docker ps -a --filter label=…`)", results["list"]["direct"], results["list"]["proxy"])]
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20, help="sandbox starts per path")
    parser.add_argument("--lists", type=int, default=50, help="list calls per path")
    parser.add_argument("--quick", action="store_true", help="5 starts and 10 lists per path")
    args = parser.parse_args()
    starts, lists = (5, 10) if args.quick else (args.starts, args.lists)
    report = asyncio.run(main(starts, lists))
    print(report)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report + "\n")


if __name__ == "__main__":
    cli()
