"""The dispatch loop on a real nats-server with the real governance and queue services: READY + assignee →
DOING and a task run for the assignee's group; REVIEW + gate → APPROVAL and a run for the gate's approver group;
and a kill at any point of a dispatch followed by a restart never dispatches twice."""

from __future__ import annotations

import asyncio

import pytest

from events.repository import Repository
from services.governance.task import GovTask
from services.router.groups import RegisteredGroup
from services.queue.service import build as build_queue
from tests.bus import context, events_of, running
from tests.clock import FakeClock
from tests.governance.helpers import (DEV, DEVSEC, JIDS, MAIN, SEC, ask, gov_settings, governance, load, move, ok,
                                      register_groups)
from tests.support import eventually

SEC_GATE = {"gates": {"security": {"role": "security", "group": SEC}}}


async def runs_for(store, task_id: str) -> list:
    return [r for r in await events_of(store, "TaskRunRequested") if r.task_id.startswith(f"gov:{task_id}.")]


async def queued_for(store, task_id: str) -> list:
    return [r for r in await events_of(store, "RunQueued") if (r.task_id or "").startswith(f"gov:{task_id}.")]


async def dispatches_of(store, task_id: str) -> list:
    return [d for d in await events_of(store, "GovTaskDispatched") if d.task_id == task_id]


async def state_is(store, task_id: str, state: str) -> bool:
    return (await load(store, task_id)).state == state


async def ready_task(nc, **fields) -> dict:
    task = ok(await ask(nc, MAIN, "gov_create_task", {"title": "Rotate the API keys", "assignee": DEV, **fields}))
    task = await move(nc, MAIN, task, "TRIAGED")
    return await move(nc, MAIN, task, "READY")


def queue(nc, store, tmp_path):
    return running(lambda ctx: build_queue(ctx, clock=FakeClock()), context(nc, store, gov_settings(tmp_path / "q")))


async def test_a_ready_task_with_an_assignee_goes_to_doing_and_the_queue_gets_one_task_run_for_that_group(
        nc, js_store, tmp_path):
    await register_groups(js_store)
    async with queue(nc, js_store, tmp_path), governance(nc, js_store, tmp_path):
        task = await ready_task(nc, description="Rotate every key older than 90 days.")
        task_id = task["task_id"]
        await eventually(lambda: state_is(js_store, task_id, "DOING"))
        await eventually(lambda: queued_for(js_store, task_id))
        [dispatch] = await dispatches_of(js_store, task_id)
        assert (dispatch.purpose, dispatch.group_folder, dispatch.chat_jid, dispatch.gate) == (
            "execute", DEV, JIDS[DEV], None)
        assert dispatch.dispatch_key == f"{task_id}.execute.work.v3"
        [run] = await runs_for(js_store, task_id)
        assert (run.task_id, run.group_folder, run.chat_jid, run.is_main, run.context_mode) == (
            f"gov:{dispatch.dispatch_key}", DEV, JIDS[DEV], False, "isolated")
        stored = await load(js_store, task_id)
        assert f"expected_version {stored.version}" in run.prompt and task_id in run.prompt
        assert "Rotate every key older than 90 days." in run.prompt
        moved = [e for e in await events_of(js_store, "GovTaskTransitioned") if e.task_id == task_id][-1]
        assert (moved.from_state, moved.to_state, moved.actor) == ("READY", "DOING", "governance")
        [queued] = await queued_for(js_store, task_id)
        assert (queued.kind, queued.group_folder) == ("task", DEV)


async def test_review_with_a_gate_goes_to_approval_and_a_run_is_requested_for_the_gate_approver_group(
        nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path, **SEC_GATE):
        task_id = (await ready_task(nc, gates=["security"]))["task_id"]
        await eventually(lambda: state_is(js_store, task_id, "DOING"))
        doing = await load(js_store, task_id)
        await move(nc, DEV, {"task_id": task_id, "version": doing.version}, "REVIEW", review_summary="rotated 4 keys")
        await eventually(lambda: state_is(js_store, task_id, "APPROVAL"))
        await eventually(lambda: len_is(runs_for(js_store, task_id), 2))
        approval = [d for d in await dispatches_of(js_store, task_id) if d.purpose == "approve"]
        assert [(d.gate, d.group_folder, d.chat_jid) for d in approval] == [("security", SEC, JIDS[SEC])]
        run = [r for r in await runs_for(js_store, task_id) if r.group_folder == SEC][0]
        assert "gov_approve" in run.prompt and "rotated 4 keys" in run.prompt
        task = await load(js_store, task_id)
        done = ok(await ask(nc, SEC, "gov_approve", {"task_id": task_id, "gate": "security",
                                                     "expected_version": task.version}))
        assert done["state"] == "DONE"


async def test_the_approval_run_goes_to_a_holder_of_the_gate_role_that_did_not_execute_the_task(
        nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path):  # default gates: security → the first folder with the role
        task_id = (await ready_task(nc, gates=["security"], assignee=DEVSEC))["task_id"]
        await eventually(lambda: state_is(js_store, task_id, "DOING"))
        doing = await load(js_store, task_id)
        await move(nc, DEVSEC, {"task_id": task_id, "version": doing.version}, "REVIEW")
        await eventually(lambda: state_is(js_store, task_id, "APPROVAL"))
        # dev-sec holds the security role too and comes first by name, but it executed the task
        assert [(d.gate, d.group_folder) for d in await dispatches_of(js_store, task_id)
                if d.purpose == "approve"] == [("security", SEC)]


async def len_is(coro, n: int) -> bool:
    return len(await coro) == n


async def test_a_reviewed_task_without_gates_waits_in_review_for_a_person(nc, js_store, tmp_path):
    await register_groups(js_store)
    async with governance(nc, js_store, tmp_path):
        task_id = (await ready_task(nc))["task_id"]
        await eventually(lambda: state_is(js_store, task_id, "DOING"))
        doing = await load(js_store, task_id)
        reviewed = await move(nc, DEV, {"task_id": task_id, "version": doing.version}, "REVIEW")
        await asyncio.sleep(0.5)  # give the loop the chance to (wrongly) act
        assert (await load(js_store, task_id)).version == reviewed["version"]
        assert len(await dispatches_of(js_store, task_id)) == 1


async def test_a_ready_task_whose_group_is_gone_waits_and_is_dispatched_when_the_group_is_reinstated(
        nc, js_store, tmp_path):
    await register_groups(js_store)
    repo = Repository(js_store, "test")
    async with governance(nc, js_store, tmp_path):
        task = ok(await ask(nc, MAIN, "gov_create_task", {"title": "Rotate the API keys", "assignee": DEV}))
        group = await repo.get(RegisteredGroup, JIDS[DEV])
        group.remove()
        await repo.save(group)
        task = await move(nc, MAIN, await move(nc, MAIN, task, "TRIAGED"), "READY")
        await asyncio.sleep(0.5)  # give the loop the chance to (wrongly) act
        assert await state_is(js_store, task["task_id"], "READY") and await dispatches_of(js_store, task["task_id"]) == []
        group = await repo.get(RegisteredGroup, JIDS[DEV])
        group.reinstate(jid=JIDS[DEV], name=DEV, folder=DEV, trigger="@Andy", requires_trigger=True, is_main=False,
                        channel="whatsapp", container_config=None, added_at="2026-01-02T00:00:00.000Z")
        await repo.save(group)
        await eventually(lambda: state_is(js_store, task["task_id"], "DOING"))
        assert len(await runs_for(js_store, task["task_id"])) == 1


@pytest.mark.parametrize("crash", ["after the dispatch commit is stored", "before the run request is stored",
                                   "after the run request is stored"])
async def test_a_kill_during_dispatch_and_a_restart_dispatch_once_and_request_one_run(crash, nc, js_store, tmp_path):
    await register_groups(js_store)
    hang = {"after the dispatch commit is stored": ("GovTaskDispatched", True),
            "before the run request is stored": ("TaskRunRequested", False),
            "after the run request is stored": ("TaskRunRequested", True)}[crash]
    crashing = CrashingStore(js_store, *hang)
    s = gov_settings(tmp_path, ack_wait_s=1)  # unacked messages come back after 1 s
    async with queue(nc, js_store, tmp_path):
        async with governance(nc, crashing, tmp_path, settings=s):
            task_id = (await ready_task(nc))["task_id"]
            await asyncio.wait_for(crashing.reached.wait(), 30)
        # the service is gone mid-dispatch (its handler never returned, nothing was acked); start it again
        async with governance(nc, js_store, tmp_path, settings=s):
            await eventually(lambda: len_is(runs_for(js_store, task_id), 1))
            await eventually(lambda: len_is(queued_for(js_store, task_id), 1))
            await asyncio.sleep(2.5)  # past two ack waits: any redelivery has been handled
        assert len(await dispatches_of(js_store, task_id)) == 1
        assert len(await runs_for(js_store, task_id)) == 1
        assert len(await queued_for(js_store, task_id)) == 1
        assert (await load(js_store, task_id)).state == "DOING"


class CrashingStore:
    """The real store, except that the service "dies" at one point: the append of the first commit holding
    ``event_type`` never returns (before or after it is stored), as if the process were killed there."""

    def __init__(self, inner, event_type: str, after_storing: bool):
        self.inner, self.event_type, self.after_storing = inner, event_type, after_storing
        self.reached = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def append(self, commit, *, expected_seq: int):
        hit = not self.reached.is_set() and any(e.eventtype == self.event_type for e in commit.events)
        if hit and not self.after_storing:
            await self._die()
        result = await self.inner.append(commit, expected_seq=expected_seq)
        if hit:
            await self._die()
        return result

    async def _die(self):
        self.reached.set()
        await asyncio.Event().wait()  # cancelled when the service stops


def test_the_dispatch_key_names_the_task_version_it_was_decided_on():
    from services.governance.dispatch import dispatch_key, run_aggregate_id
    task = GovTask.file(task_id="gt-7", title="t", description="", product_id=None, gates=[], assignee=DEV,
                        actor="person:o", reason="", at="2026-03-01T10:00:00.000Z")
    assert dispatch_key(task, "approve", "security") == "gt-7.approve.security.v1"
    assert run_aggregate_id("gt-7.execute.work.v3") == "gov:gt-7.execute.work.v3"
