"""The runner's handlers: dispatched runs start sandboxes; piped turns and close requests (the queue decides
both: it owns the run lifecycle) go to live runs; start-up recovers runs that were in flight when the runner
stopped."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import Protocol, Sequence

from events.catalogue.agent import AgentInputDelivered, AgentInputReturned, AgentRunFinished
from events.catalogue.queue import RunCloseRequested, RunCloseTimedOut, RunDispatched, RunInputPiped
from services.harness.service import Delivery, Emit
from services.runner.runs import GroupInfo, RunManager

log = logging.getLogger("nanoclaw.runner")


class ReadModel(Protocol):
    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]: ...


@dataclass
class RunnerDeps:
    manager: RunManager
    readmodel: ReadModel


def _group(rm: ReadModel, chat_jid: str) -> GroupInfo:
    rows = rm.query("SELECT container_config FROM registered_groups WHERE jid = ?", (chat_jid,))
    raw = rows[0]["container_config"] if rows else None
    return GroupInfo(json.loads(raw) if raw else None)


def _session(rm: ReadModel, folder: str) -> str | None:
    rows = rm.query("SELECT session_id FROM sessions WHERE group_folder = ?", (folder,))
    return rows[0]["session_id"] if rows else None


async def _start(deps: RunnerDeps, run: RunDispatched) -> None:
    """Start ``run``, resuming the group's session unless it is an ``isolated`` task."""
    session = None if run.context_mode == "isolated" else _session(deps.readmodel, run.group_folder)
    await deps.manager.start(run, _group(deps.readmodel, run.chat_jid), session)


async def on_dispatched(d: Delivery, deps: RunnerDeps) -> list[Emit]:
    run: RunDispatched = d.payload  # type: ignore[assignment]
    state = deps.readmodel.query("SELECT state FROM run_dispatches WHERE run_id = ?", (run.run_id,))
    if state and state[0]["state"] != "dispatched":
        return []  # started before (a redelivery after a restart): recovery owns it
    await _start(deps, run)
    return []


async def on_input_piped(d: Delivery, deps: RunnerDeps) -> list[Emit]:
    """Hand the queue's piped turns to the agent: taken → ``AgentInputDelivered``; the run has ended or did
    not answer → ``AgentInputReturned`` (the queue puts the turns back at the front). Each outcome is stored
    once per pipe (message id from the pipe's event), so a redelivery cannot hand the same turns in twice."""
    inp: RunInputPiped = d.payload  # type: ignore[assignment]
    if inp.prompt is None or inp.group_folder is None:
        return []  # older logs: a pipe decided by the router, delivered back then
    key = f"run:input:{inp.run_id}:{d.event.id}"
    ok, reason = await deps.manager.deliver_input(inp.run_id, inp.prompt, key)
    if ok:
        return [Emit.append(inp.run_id, AgentInputDelivered(run_id=inp.run_id, chat_jid=inp.chat_jid,
                                                            group_folder=inp.group_folder, message_ids=inp.message_ids,
                                                            turn_ids=inp.turn_ids), msg_id=key)]
    log.info("piped input for run %s returned to the queue: %s", inp.run_id, reason)
    return [Emit.append(inp.run_id, AgentInputReturned(run_id=inp.run_id, chat_jid=inp.chat_jid,
                                                       group_folder=inp.group_folder, turn_ids=inp.turn_ids,
                                                       queued_run_ids=inp.queued_run_ids, message_ids=inp.message_ids,
                                                       reason=reason), msg_id=key)]


async def on_close_requested(d: Delivery, deps: RunnerDeps) -> list[Emit]:
    req: RunCloseRequested = d.payload  # type: ignore[assignment]
    await deps.manager.close(req.run_id)
    return []


async def on_close_timed_out(d: Delivery, deps: RunnerDeps) -> list[Emit]:
    """The queue stopped waiting for the run to end and freed its group: a sandbox still running must stop now,
    or the group's next run would share its workspace with it."""
    expired: RunCloseTimedOut = d.payload  # type: ignore[assignment]
    await deps.manager.stop(expired.run_id, "the queue released the run: it did not end after its close")
    return []


async def recover(deps: RunnerDeps) -> list[Emit]:
    """Runs in flight when the runner stopped (v1 cleanupOrphans, made lossless): leftover sandboxes are
    stopped first (so a run never runs twice at once); then a run that had started finishes as ``interrupted``
    (the queue re-runs it once, or the router's roll-back and retry re-run a message run); a run that never
    started is started now. Leftover agent sandboxes are then removed."""
    manager = deps.manager
    removed = await manager.backend.remove_orphans()  # first: a restarted run must never meet its old sandbox
    if removed:
        log.info("stopped %d sandbox(es) left by an earlier runner: %s", len(removed), ", ".join(removed))
    emits: list[Emit] = []
    for row in deps.readmodel.query("SELECT * FROM run_dispatches WHERE state != 'finished' ORDER BY dispatched_at"):
        spec = RunDispatched.model_validate(json.loads(row["spec"]))
        if row["state"] == "dispatched":
            log.info("starting run %s, dispatched before the runner stopped", spec.run_id)
            await _start(deps, spec)
            continue
        log.warning("run %s was interrupted by a runner restart; finishing it as failed", spec.run_id)
        manager.finished.add(spec.run_id)
        emits.append(Emit.append(spec.run_id, AgentRunFinished(
            run_id=spec.run_id, chat_jid=spec.chat_jid, group_folder=spec.group_folder, status="failed",
            output_delivered=bool(row["delivered"]), error="interrupted: the runner restarted during the run",
            interrupted=True), msg_id=f"run:AgentRunFinished:{spec.run_id}:finished"))
    return emits
