"""Event-store benchmark: appends, aggregate loads, full-log reads and the audit rebuild, in one run against a
nats-server of its own.

    .venv/bin/python -m bench.store_bench            # 100k events, sync_interval "always" (as in production)
    .venv/bin/python -m bench.store_bench --quick    # 10k events, fewer samples: a smoke run
    .venv/bin/python -m bench.store_bench --help

The stream ends up holding exactly ``--events`` events, one event per commit: the sequential and concurrent
appends first, then aggregates of ``--events-per-aggregate`` events written round by round (every aggregate's
1st event, then every aggregate's 2nd, ...), so each aggregate's commits are spread over the whole stream.
Every message is what :meth:`JetStreamEventStore.append` writes (same subject, headers and body format).

This is a measurement, not a test: nothing asserts on time. Results (a markdown table plus the conditions) are
printed and written to ``bench/results/latest.md`` (git-ignored); docs/benchmarks.md quotes one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nats
from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.base import EventPayload
from events.envelope import AggregateRef, Commit, new_commit
from events.repository import Repository
from events.chain import HDR_CHAIN
from events.store.jetstream import JetStreamEventStore, append_message
from events.store.streams import StreamSettings, ensure_streams
from events.subjects import EVENT_STREAM
from projections.audit import rebuild
from projections.catalog import all_projections
from services.harness.natsserver import EmbeddedNats, find_nats_server

RESULTS = Path(__file__).resolve().parent / "results"
SOURCE = "bench"


# --- the bench's own aggregate (context "bench": never mixed up with the catalogue) -----------------------------

class BenchItemOpened(EventPayload):
    context = "bench"
    aggregate = "item"
    n: int
    note: str


class BenchItemTicked(EventPayload):
    context = "bench"
    aggregate = "item"
    n: int
    note: str


class BenchItem(NcAggregate):
    CONTEXT, TYPE = "bench", "item"

    @staticmethod
    def create_id(name: str) -> str:
        return name

    @event("BenchItemOpened")
    def __init__(self, n: int, note: str):
        self.ticks = 0
        self.last_n = n

    @event("BenchItemTicked")
    def tick(self, n: int, note: str) -> None:
        self.ticks += 1
        self.last_n = n


def ref(aggregate_id: str) -> AggregateRef:
    return BenchItem.ref(aggregate_id)


def make_commit(aggregate_id: str, version: int, n: int, note: str) -> Commit:
    """Commit of one event: ``BenchItemOpened`` for a new aggregate (version 0), then ``BenchItemTicked``."""
    payload = BenchItemOpened(n=n, note=note) if version == 0 else BenchItemTicked(n=n, note=note)
    return new_commit(ref(aggregate_id), [payload], version=version, source=SOURCE)


# --- helpers ----------------------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def rate(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "n/a"


def runs(values: list[float], fmt: str = "{:,.0f}") -> str:
    return "[" + " / ".join(fmt.format(v) for v in values) + "]" if len(values) > 1 else ""


@dataclass
class Report:
    conditions: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def cond(self, name: str, value: object) -> None:
        self.conditions.append((name, str(value)))
        print(f"  {name}: {value}", flush=True)

    def row(self, name: str, value: str, note: str = "") -> None:
        self.rows.append((name, value, note))
        print(f"  {name}: {value}  {note}", flush=True)

    def markdown(self) -> str:
        out = ["## Conditions", "", "| | |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.conditions]
        out += ["", "## Results", "", "| Measurement | Result | Notes |", "|---|---|---|"]
        out += [f"| {k} | {v} | {n} |" for k, v, n in self.rows]
        return "\n".join(out) + "\n"


def server_version() -> str:
    try:
        out = subprocess.run([str(find_nats_server()), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip().removeprefix("nats-server: ")
    except Exception as exc:  # reported, not fatal
        return f"unknown ({exc})"


def filesystem(path: Path) -> str:
    """Type and device of the file system holding ``path`` (from /proc/mounts; Linux only)."""
    try:
        mounts = [line.split()[:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "file system unknown"
    path_s = str(Path(path).resolve())
    best = max((m for m in mounts if path_s == m[1] or path_s.startswith(m[1].rstrip("/") + "/")),
               key=lambda m: len(m[1]), default=None)
    return f"{best[2]} on {best[0]}" if best else "file system unknown"


def cores() -> str:
    total = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = total
    return f"{usable} usable ({total} online), shared by nats-server and this client"


# --- phases -----------------------------------------------------------------------------------------------------

async def sequential_appends(store: JetStreamEventStore, count: int, note: str, report: Report) -> None:
    """One append at a time, each a new aggregate with one event; the commit is built before the clock starts."""
    latencies = []
    for i in range(count):
        commit = make_commit(f"seq-{i}", 0, i, note)
        t0 = time.perf_counter()
        await store.append(commit, expected_seq=0)
        latencies.append(time.perf_counter() - t0)
    report.row("append, one at a time: p50 / p99", f"{ms(pct(latencies, .5))} / {ms(pct(latencies, .99))}",
               f"{count:,} new aggregates, 1 event per commit; {rate(count, sum(latencies))} sequential")


async def concurrent_appends(store: JetStreamEventStore, count: int, concurrency: int, note: str,
                             report: Report) -> None:
    """``count`` appends to new aggregates, at most ``concurrency`` in flight (asyncio.gather over a semaphore)."""
    commits = [make_commit(f"conc-{i}", 0, i, note) for i in range(count)]
    gate = asyncio.Semaphore(concurrency)

    async def one(c: Commit) -> None:
        async with gate:
            await store.append(c, expected_seq=0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in commits))
    elapsed = time.perf_counter() - t0
    report.row(f"append throughput, {concurrency} concurrent", rate(count, elapsed),
               f"{count:,} new aggregates, 1 event per commit, commits built beforehand")


async def populate(nc, aggregates: int, per_aggregate: int, note: str, report: Report) -> list[str]:
    """Write ``aggregates`` × ``per_aggregate`` events round by round, every commit with the store's optimistic
    concurrency headers (expected sequence = the aggregate's previous commit). Each round is published
    with ``publish_async`` and all its acks awaited before the next round; the messages are byte-for-byte
    what ``store.append`` sends (:func:`append_message`). Returns the aggregate ids."""
    js = nc.jetstream(publish_async_max_pending=8192)
    ids = [f"agg-{i}" for i in range(aggregates)]
    last = [0] * aggregates
    links = [""] * aggregates  # each aggregate's last chain link, as the store remembers it (events/chain.py)
    t0 = time.perf_counter()
    for version in range(per_aggregate):
        futures = []
        for i, agg in enumerate(ids):
            subject, headers, body = append_message(make_commit(agg, version, version, note), expected_seq=last[i],
                                                    prev_link=links[i])
            links[i] = headers[HDR_CHAIN]
            futures.append(await js.publish_async(subject, body, headers=headers, stream=EVENT_STREAM))
        for i, ack in enumerate(await asyncio.gather(*futures)):
            last[i] = ack.seq
    elapsed = time.perf_counter() - t0
    total = aggregates * per_aggregate
    report.row("populate (setup, not a store figure)", rate(total, elapsed),
               f"{total:,} events = {aggregates:,} aggregates × {per_aggregate}, interleaved; publish_async, "
               f"expected-sequence headers as the store sends them; {elapsed:.1f} s")
    return ids


async def loads(store: JetStreamEventStore, ids: list[str], samples: int, per_aggregate: int, seed: int,
                total_events: int, report: Report) -> None:
    rng = random.Random(seed)
    chosen = rng.sample(ids, min(samples, len(ids)))
    raw_load, cold, warm = [], [], []
    for agg in chosen:
        t0 = time.perf_counter()
        commits = await store.load(ref(agg))
        raw_load.append(time.perf_counter() - t0)
        assert len(commits) == per_aggregate, (agg, len(commits))
    for agg in chosen:
        t0 = time.perf_counter()
        item = await Repository(store, SOURCE).get(BenchItem, agg)  # fresh repository: nothing cached
        cold.append(time.perf_counter() - t0)
        assert item is not None and item.version == per_aggregate
    repo = Repository(store, SOURCE)
    for agg in chosen:
        await repo.get(BenchItem, agg)  # prime the cache (not timed)
    rng.shuffle(chosen)
    for agg in chosen:
        t0 = time.perf_counter()
        item = await repo.get(BenchItem, agg)  # cache hit: one head() (direct get of the last message) + copy
        warm.append(time.perf_counter() - t0)
        assert item is not None and item.version == per_aggregate
    where = f"{len(chosen)} random aggregates of {per_aggregate} events, interleaved among {total_events:,}"
    report.row("load, store.load: p50 / p99", f"{ms(pct(raw_load, .5))} / {ms(pct(raw_load, .99))}",
               f"{where}; batched direct get, decoded")
    report.row("load cold, fresh Repository.get: p50 / p99", f"{ms(pct(cold, .5))} / {ms(pct(cold, .99))}",
               "store.load + replay into the aggregate")
    report.row("load warm, cached Repository.get: p50 / p99", f"{ms(pct(warm, .5))} / {ms(pct(warm, .99))}",
               "cache hit: one head() check + deepcopy")


async def read_all(store: JetStreamEventStore) -> tuple[int, float, float]:
    """``(messages, wall s, this process's CPU s)`` of one full read."""
    t0, c0 = time.perf_counter(), time.process_time()
    count = 0
    async for _ in store.read_raw():
        count += 1
    return count, time.perf_counter() - t0, time.process_time() - c0


async def rebuild_all(store: JetStreamEventStore, workdir: Path, run: int) -> tuple[int, float, float]:
    """``(events applied, wall s, this process's CPU s)`` of one audit rebuild into a new file."""
    target = workdir / f"audit-{run}.db"
    t0, c0 = time.perf_counter(), time.process_time()
    applied = await rebuild(store, target, all_projections())
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = sqlite3.connect(target).execute("SELECT count(*) FROM event_log").fetchone()[0]
    assert rows == applied, (rows, applied)
    target.unlink()
    return applied, elapsed, cpu


async def replay_rates(store: JetStreamEventStore, workdir: Path, repeat: int, total: int, report: Report) -> None:
    """Raw read and rebuild, alternated ``repeat`` times so drift in the machine's load hits both alike."""
    read_rates, rebuild_rates, read_cpu, rebuild_cpu = [], [], [], []
    for run in range(repeat):
        count, elapsed, cpu = await read_all(store)
        assert count == total, (count, total)
        read_rates.append(count / elapsed)
        read_cpu.append(cpu / elapsed)
        applied, elapsed, cpu = await rebuild_all(store, workdir, run)
        assert applied == total, (applied, total)
        rebuild_rates.append(applied / elapsed)
        rebuild_cpu.append(cpu / elapsed)
    read, built = statistics.median(read_rates), statistics.median(rebuild_rates)
    med = f"median of {repeat} runs {runs(read_rates)}; " if repeat > 1 else ""
    report.row("raw ordered read (read_raw, whole stream)", f"{read:,.0f} events/s",
               f"{med}ordered push consumer, counting messages; client CPU "
               f"{statistics.median(read_cpu):.0%} of wall time ({1e6 / read:.0f} µs per event)")
    med = f"median of {repeat} runs {runs(rebuild_rates)}; " if repeat > 1 else ""
    report.row("audit rebuild into fresh SQLite (all_projections)", f"{built:,.0f} events/s",
               f"{med}projections.audit.rebuild, {len(all_projections())} projections; client CPU "
               f"{statistics.median(rebuild_cpu):.0%} of wall time ({1e6 / built:.0f} µs per event)")
    ratios = [b / r for b, r in zip(rebuild_rates, read_rates)]
    report.row("rebuild / raw read", f"{built / read:.0%}",
               f"ratio of the two medians above; per run {runs(ratios, '{:.0%}')}".strip())


# --- main -------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--events", type=int, default=100_000, help="events in the stream at the end (all phases)")
    p.add_argument("--events-per-aggregate", type=int, default=10, help="events of each populated aggregate")
    p.add_argument("--latency-appends", type=int, default=2_000, help="sequential appends timed one by one")
    p.add_argument("--concurrent-appends", type=int, default=20_000, help="appends in the throughput phase")
    p.add_argument("--concurrency", type=int, default=64, help="appends in flight in the throughput phase")
    p.add_argument("--load-samples", type=int, default=200, help="random aggregates loaded (cold and warm)")
    p.add_argument("--repeat", type=int, default=3, help="raw read + rebuild pairs (median reported)")
    p.add_argument("--note-bytes", type=int, default=64, help="size of the payload's free-text field")
    p.add_argument("--no-sync-always", dest="sync_always", action="store_false",
                   help="default sync_interval (2 min) instead of fsync on every write")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 10k events, 200 + 2,000 appends, 50 loads, 1 repeat (overrides those options)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "latest.md", help="markdown results file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (server data and log)")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.latency_appends, args.concurrent_appends = 10_000, 200, 2_000
        args.load_samples, args.repeat = 50, 1
    populated = args.events - args.latency_appends - args.concurrent_appends
    if populated < args.events_per_aggregate * max(args.load_samples, 1):
        p.error(f"--events {args.events} leaves {populated} events to populate: too few for "
                f"{args.load_samples} aggregates of {args.events_per_aggregate}")
    if populated % args.events_per_aggregate:
        p.error(f"--events minus the appends ({populated}) must be a multiple of --events-per-aggregate")
    return args


async def bench(args: argparse.Namespace, workdir: Path) -> Report:
    report = Report()
    note = "x" * args.note_bytes
    print("conditions:", flush=True)
    report.cond("date (UTC)", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"))
    report.cond("cores", cores())
    report.cond("load average (1/5/15 min) at start", " / ".join(f"{x:.2f}" for x in os.getloadavg()))
    report.cond("python", f"{platform.python_implementation()} {platform.python_version()} ({platform.machine()})")
    report.cond("nats-server", server_version())
    report.cond("nats-py", importlib.metadata.version("nats-py"))
    report.cond("SQLite", sqlite3.sqlite_version)
    report.cond("sync mode", 'sync_interval "always" (fsync every write)' if args.sync_always
                else "default sync_interval (2 min)")
    report.cond("storage", f"JetStream file storage in {workdir} ({filesystem(workdir)})")

    server = EmbeddedNats(workdir / "nats", sync_always=args.sync_always).start()
    try:
        nc = await nats.connect(server.url, max_reconnect_attempts=2)
    except BaseException:
        server.stop()
        raise
    try:
        await ensure_streams(nc.jetstream(), StreamSettings())
        store = JetStreamEventStore(nc)
        subject, headers, body = append_message(make_commit("agg-0", 1, 1, note), expected_seq=1)
        headers["Nats-Expected-Stream"] = EVENT_STREAM  # added by js.publish(stream=...) in store.append
        header_bytes = len("NATS/1.0\r\n\r\n") + sum(len(k) + len(v) + 4 for k, v in headers.items())
        report.cond("commit size", f"{len(body)} B body (1 event, {args.note_bytes} B note) + {len(headers)} headers "
                    f"of {header_bytes} B in all, subject {len(subject)} B")

        print("results:", flush=True)
        await sequential_appends(store, args.latency_appends, note, report)
        await concurrent_appends(store, args.concurrent_appends, args.concurrency, note, report)
        populated = args.events - args.latency_appends - args.concurrent_appends
        ids = await populate(nc, populated // args.events_per_aggregate, args.events_per_aggregate, note, report)
        info = await nc.jetstream().stream_info(EVENT_STREAM)
        assert info.state.messages == args.events, (info.state.messages, args.events)
        report.cond("event count", f"{info.state.messages:,} events = commits ({args.latency_appends:,} sequential "
                    f"+ {args.concurrent_appends:,} concurrent appends + {populated:,} populated)")
        report.cond("stored size", f"{info.state.bytes / 1e6:.1f} MB, {info.state.bytes / info.state.messages:.0f} B "
                    "per message on disk")

        await loads(store, ids, args.load_samples, args.events_per_aggregate, args.seed, args.events, report)
        await replay_rates(store, workdir, args.repeat, args.events, report)
        report.cond("load average (1/5/15 min) at end", " / ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        await nc.close()
        server.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="nanoclaw-bench-"))
    try:
        t0 = time.perf_counter()
        report = asyncio.run(bench(args, workdir))
        elapsed = time.perf_counter() - t0
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    command = "python -m bench.store_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (f"# Store benchmark\n\n`{command.strip()}` — {elapsed:.0f} s in all. One run; a shared 2-core machine "
            "is noisy, so read these as magnitudes.\n\n" + report.markdown())
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
