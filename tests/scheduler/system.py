"""The scheduler on a real nats-server with a fake clock, registered groups, and a stand-in for the runner that
answers every task run request with the events the runner emits (the event contract is our own port)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from functools import partial
from typing import AsyncIterator

from events.catalogue.agent import AgentOutputProduced, AgentRunFinished, AgentRunStarted
from events.catalogue.queue import task_run_id
from services.cli.cmd_groups import register_group
from services.harness.emit import append_emit
from services.harness.service import Emit
from services.scheduler.service import build
from tests.bus import ask, context, events_of, running, settings
from tests.clock import FakeClock
from tests.support import eventually, has_at_least

MAIN, TEAM, OTHER = "main@g.us", "team@g.us", "other@g.us"
FOLDERS = {MAIN: "whatsapp_main", TEAM: "whatsapp_team", OTHER: "whatsapp_other"}


class SchedulerSystem:
    def __init__(self, nc, store, tmp_path, clock: FakeClock, **scheduler_cfg):
        self.nc, self.store, self.clock = nc, store, clock
        self.settings = settings(tmp_path, scheduler=scheduler_cfg)
        self._auto = None

    async def register_groups(self) -> None:
        for jid, folder in FOLDERS.items():
            await register_group(self.store, jid=jid, name=folder, folder=folder, trigger="@Andy",
                                 requires_trigger=False, is_main=jid == MAIN)

    @contextlib.asynccontextmanager
    async def scheduler(self, instance: str = "") -> AsyncIterator[object]:
        async with running(partial(build, clock=self.clock, instance=instance),
                           context(self.nc, self.store, self.settings)) as runner:
            yield runner

    async def tool(self, folder: str, name: str, **args) -> dict:
        return await ask(self.nc, folder, name, args, timeout=10)

    async def schedule(self, folder: str = "whatsapp_team", **args) -> str:
        reply = await self.tool(folder, "schedule_task", **args)
        assert reply["ok"], reply
        return reply["result"].split()[1]

    async def advance(self, delta: timedelta | float) -> None:
        self.clock.advance(delta.total_seconds() if isinstance(delta, timedelta) else delta)
        await asyncio.sleep(0.05)

    async def set_time(self, when: datetime) -> None:
        self.clock.set(when)
        await asyncio.sleep(0.05)

    async def requests(self) -> list:
        return await events_of(self.store, "TaskRunRequested")

    async def started(self, task_id: str | None = None) -> list:
        return [e for e in await events_of(self.store, "TaskRunStarted") if task_id in (None, e.task_id)]

    async def wait_started(self, n: int, task_id: str | None = None) -> list:
        await eventually(lambda: has_at_least(self.started(task_id), n))
        await asyncio.sleep(0.3)  # room for a wrong extra claim to show up
        return await self.started(task_id)

    async def finish(self, request, status: str = "succeeded", text: str | None = "all done") -> None:
        """What the runner emits for the queue's run of ``request`` (a ``TaskRunRequested``)."""
        run_id = task_run_id(request.run_id)
        base = dict(run_id=run_id, chat_jid=request.chat_jid, group_folder=request.group_folder)
        events = [AgentRunStarted(**base, kind="task", task_id=request.task_id)]
        if text:
            events.append(AgentOutputProduced(**base, text=text))
        for i, ev in enumerate(events):
            await append_emit(self.store, Emit.append(run_id, ev), source="runner", msg_id=f"{run_id}:{i}")
        fin = AgentRunFinished(**base, status=status, duration_ms=1500, error=None if status == "succeeded" else "boom")
        await append_emit(self.store, Emit.append(run_id, fin), source="runner", msg_id=f"{run_id}:fin")

    @contextlib.asynccontextmanager
    async def auto_runner(self) -> AsyncIterator[None]:
        """Finish every task run request as soon as it appears (a runner that always succeeds)."""
        async def loop() -> None:
            done: set[str] = set()
            while True:
                for req in await self.requests():
                    if req.run_id not in done:
                        done.add(req.run_id)
                        await self.finish(req)
                await asyncio.sleep(0.05)
        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
