"""Queue metrics on ``/metrics``, read from the projections database at each scrape (projections/queue_stats.py):
a scrape costs one read transaction over small tables, and the numbers are exactly what ``nanoclaw status``
shows. Metric names (all labelled with ``group`` where per group):

- ``nanoclaw_queue_depth{group}`` / ``nanoclaw_queue_depth_total``: runs queued, not yet dispatched;
- ``nanoclaw_queue_running{group}``: runs dispatched and not finished;
- ``nanoclaw_queue_wait_seconds`` (histogram): from the router's turn request to its run's start;
- ``nanoclaw_run_duration_seconds`` (histogram): finished runs;
- ``nanoclaw_queue_retries_total{group}`` / ``nanoclaw_queue_abandoned_total{group}`` (counters).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from projections.queue_stats import Histogram, QueueSnapshot, snapshot

log = logging.getLogger(__name__)


class QueueMetrics(Collector):
    """Args: ``db_path``: the projections database (``<data_dir>/projections/nanoclaw.db``)."""

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)

    def _snapshot(self) -> QueueSnapshot:
        if not self.db_path.exists():
            return QueueSnapshot()
        try:
            db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=1.0)
            try:
                return snapshot(db)
            finally:
                db.close()
        except sqlite3.Error as exc:  # not created yet (first start) or busy: an empty scrape, not a 500
            log.warning("queue metrics unavailable: %s", exc)
            return QueueSnapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        depth = GaugeMetricFamily("nanoclaw_queue_depth", "Runs queued and not yet dispatched, per group", labels=["group"])
        running = GaugeMetricFamily("nanoclaw_queue_running", "Runs dispatched and not finished, per group", labels=["group"])
        retries = CounterMetricFamily("nanoclaw_queue_retries", "Message-run retries scheduled, per group", labels=["group"])
        abandons = CounterMetricFamily("nanoclaw_queue_abandoned", "Groups' messages abandoned after their retries",
                                       labels=["group"])
        for g in snap.groups:
            depth.add_metric([g.group_folder], g.waiting)
            running.add_metric([g.group_folder], g.running)
            retries.add_metric([g.group_folder], g.retries)
            abandons.add_metric([g.group_folder], g.abandons)
        yield depth
        yield GaugeMetricFamily("nanoclaw_queue_depth_total", "Runs queued and not yet dispatched, all groups", value=snap.depth)
        yield running
        yield retries
        yield abandons
        yield _histogram("nanoclaw_queue_wait_seconds", "Wait from the turn request to its run's start (s)", snap.wait)
        yield _histogram("nanoclaw_run_duration_seconds", "Duration of finished agent runs (s)", snap.duration)


def _histogram(name: str, documentation: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [(repr(float(bound)), count) for bound, count in sorted(h.buckets.items())] + [("+Inf", h.count)]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=h.sum_s)


def register_queue_metrics(registry: CollectorRegistry, db_path: Path) -> None:
    """Add the collector once per registry (a rebuilt service in the same process reuses it)."""
    if not getattr(registry, "_nanoclaw_queue_metrics", False):
        registry.register(QueueMetrics(db_path))
        registry._nanoclaw_queue_metrics = True  # type: ignore[attr-defined]
