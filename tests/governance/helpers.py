"""Shared set-up for governance tests: registered groups with roles, the service on a real nats-server, and
tool calls as agents make them (NATS requests on ``nc.ipc.<folder>.<tool>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from events.repository import Repository
from services.governance.service import build
from services.governance.task import GovTask
from services.harness.config import HarnessSettings, Settings
from services.router.groups import RegisteredGroup
from tests.bus import ask, context, refused, running  # noqa: F401 — refused: re-exported for the tests
from tests.clock import FakeClock

MAIN, DEV, SEC, DEVSEC, NOBODY = "whatsapp_main", "dev-team", "sec-team", "dev-sec", "no-role"
JIDS = {MAIN: "main@g.us", DEV: "dev@g.us", SEC: "sec@g.us", DEVSEC: "devsec@g.us", NOBODY: "norole@g.us"}
ROLES = {DEV: ["developer"], SEC: ["security"], DEVSEC: ["developer", "security"]}
"""The main group holds ``main`` by being the registered main group; NOBODY holds no role."""


def gov_settings(tmp_path: Path, *, ack_wait_s: float = 5, **governance: Any) -> Settings:
    harness = HarnessSettings(max_deliver=5, retry_delays_s=[0.05], ack_wait_s=ack_wait_s)
    return Settings(data_dir=tmp_path / "data", timezone="UTC", harness=harness,
                    governance={"roles": ROLES, **governance})


def governance(nc, store, tmp_path: Path, *, clock: FakeClock | None = None, settings: Settings | None = None,
               **governance_config: Any):
    s = settings or gov_settings(tmp_path, **governance_config)
    return running(lambda ctx: build(ctx, clock=clock or FakeClock()), context(nc, store, s))


async def register_groups(store, *folders: str) -> None:
    repo = Repository(store, "test")
    for folder in folders or tuple(JIDS):
        group = RegisteredGroup.register(jid=JIDS[folder], name=folder, folder=folder, trigger="@Andy",
                                         requires_trigger=True, is_main=folder == MAIN, channel="whatsapp",
                                         container_config=None, added_at="2026-01-01T00:00:00.000Z")
        await repo.save(group)


def ok(reply: dict) -> Any:
    assert reply["ok"] is True, reply
    return reply["result"]


async def move(nc, folder: str, task: dict, to: str, **extra: Any) -> dict:
    """``gov_transition`` with the version from ``task`` (a previous answer); returns the new answer."""
    return ok(await ask(nc, folder, "gov_transition", {"task_id": task["task_id"], "to": to,
                                                       "expected_version": task["version"], **extra}))


async def load(store, task_id: str) -> GovTask:
    task = await Repository(store, "test").get(GovTask, task_id)
    assert task is not None
    return task


async def events_of_task(store, task_id: str) -> list[tuple[str, dict]]:
    return [(e.eventtype, e.data) async for c in store.read() for e in c.events
            if e.aggregatetype == "task" and e.aggregatecontext == "governance" and e.aggregateid == task_id]
