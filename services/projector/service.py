"""Keeps ``<data_dir>/projections/nanoclaw.db`` up to date with every projection of the catalog, and records
each message of the log its projections skip as a ``MessageDeadLettered`` event, once (dead_letters.py). Also
the operator's consumer of ``RunAbandoned`` (abandoned.py: an error log line) and the queue metrics of
``/metrics`` (queue_metrics.py, read from the same database)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from events.tasks import cancel_and_wait
from projections.catalog import all_projections
from projections.runner import ProjectionRunner
from projections.sqlite import open_db
from services.harness.context import ServiceContext
from services.harness.service import Service
from services.projector.abandoned import on_run_abandoned
from services.projector.dead_letters import DeadLetterRecorder
from services.projector.queue_metrics import register_queue_metrics


def read_model_path(data_dir: Path) -> Path:
    return Path(data_dir) / "projections" / "nanoclaw.db"


def build(ctx: ServiceContext) -> Service:
    register_queue_metrics(ctx.metrics.registry, read_model_path(ctx.data_dir))

    async def follow(_deps: object) -> None:
        db = open_db(read_model_path(ctx.data_dir))
        recorder = DeadLetterRecorder(ctx.nc, ctx.store, db)
        recording = asyncio.create_task(recorder.run(), name="projections-dead-letters")
        try:
            await ProjectionRunner(db, all_projections(), ctx.store, on_skip=recorder.wake.set).follow()
        finally:
            await cancel_and_wait([recording])
            db.close()

    return Service("projections", tasks=[follow], handlers={"RunAbandoned": on_run_abandoned})
