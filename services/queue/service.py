"""The queue service: wiring of handlers, configuration, clock and the retry timer.

Stopping the service kills nothing: runs already dispatched keep going (v1 detaches containers on shutdown), and
their ``AgentRunFinished`` waits in the log for the next start, which reloads the queue from JetStream and
re-plans the retry timer from its state.
"""

from __future__ import annotations

from services.harness.context import ServiceContext
from services.harness.service import Service
from services.queue import handlers
from services.queue.config import QueueConfig
from services.harness.clock import Clock, SystemClock
from services.queue.timers import retry_timer


def build(ctx: ServiceContext, clock: Clock | None = None) -> Service:
    """``clock``: for tests (default: the system clock).

    Raises: pydantic.ValidationError for an invalid ``queue:`` section (reported at boot)."""
    config = QueueConfig.model_validate(ctx.settings.queue)
    deps = handlers.QueueDeps(repository=ctx.repository("queue"), config=config, clock=clock or SystemClock())
    return Service("queue", handlers=dict(handlers.HANDLERS), deps=deps, tasks=[retry_timer], on_start=handlers.on_start)
