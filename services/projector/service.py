"""Keeps ``<data_dir>/projections/nanoclaw.db`` up to date with every projection of the catalog."""

from __future__ import annotations

from pathlib import Path

from projections.catalog import all_projections
from projections.runner import ProjectionRunner
from projections.sqlite import open_db
from services.harness.context import ServiceContext
from services.harness.service import Service


def read_model_path(data_dir: Path) -> Path:
    return Path(data_dir) / "projections" / "nanoclaw.db"


def build(ctx: ServiceContext) -> Service:
    async def follow(_deps: object) -> None:
        db = open_db(read_model_path(ctx.data_dir))
        try:
            await ProjectionRunner(db, all_projections(), ctx.store).follow()
        finally:
            db.close()

    return Service("projections", tasks=[follow])
