"""Prometheus metrics per service (labels ``service`` and, where useful, ``event_type``).

All services of one process share one registry, so ``nanoclaw up`` exposes everything on one ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.handled = Counter("nanoclaw_messages_handled", "Messages handled and acked", ["service", "event_type"], registry=r)
        self.failed = Counter("nanoclaw_messages_failed", "Handler failures (the message is retried)", ["service", "event_type"], registry=r)
        self.dead_lettered = Counter("nanoclaw_messages_dead_lettered", "Messages moved to the dead-letter stream", ["service"], registry=r)
        self.latency = Histogram("nanoclaw_handler_seconds", "Handler latency (s), including the appends it makes", ["service"],
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.lag = Gauge("nanoclaw_consumer_lag", "Messages waiting for the service's consumer", ["service"], registry=r)
