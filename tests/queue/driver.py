"""Drive the queue's handlers in-process, as the harness would: triggers are stored in an in-memory event store,
handed to the handler, and its emits appended with the harness's idempotent message ids. Time is a fake clock."""

from __future__ import annotations

from events.catalogue.agent import AgentInputReturned, AgentOutputProduced, AgentRunFinished
from events.catalogue.base import EventPayload
from events.catalogue.router import AgentTurnRequested
from events.catalogue.scheduler import TaskRunRequested
from events.envelope import AggregateRef, new_commit
from events.repository import Repository
from events.store.memory import InMemoryEventStore
from services.harness.emit import append_emit
from services.harness.service import Delivery
from services.queue.config import QueueConfig
from services.queue.handlers import HANDLERS, QueueDeps
from services.queue.runqueue import QUEUE_ID, RunQueue
from services.queue.timers import fire_due

from tests.clock import FakeClock


def folder(jid: str) -> str:
    return jid.split("@")[0]


class QueueDriver:
    def __init__(self, cap: int = 2, **config):
        self.store = InMemoryEventStore()
        self.clock = FakeClock()
        self.deps = QueueDeps(Repository(self.store, "queue"), QueueConfig(max_concurrent=cap, **config), self.clock)

    async def publish(self, aggregate_id: str, payload: EventPayload) -> tuple[Delivery, list[EventPayload]]:
        """Store a trigger and deliver it. Returns the delivery (to redeliver it) and the queue's new events."""
        ref = AggregateRef.for_payload(payload, aggregate_id)
        head = await self.store.head(ref)
        commit = new_commit(ref, [payload], version=head.version, source="test")
        result = await self.store.append(commit, expected_seq=head.seq)
        delivery = Delivery(commit.events[0], payload, result.seq, commit.subject)
        return delivery, await self.deliver(delivery)

    async def deliver(self, d: Delivery) -> list[EventPayload]:
        out: list[EventPayload] = []
        for i, emit in enumerate(await HANDLERS[type(d.payload).__name__](d, self.deps)):
            await append_emit(self.store, emit, source="queue", msg_id=f"{d.event.id}:queue:{i}", causation=d.event)
            out += emit.payloads
        return out

    # -- triggers -----------------------------------------------------------------------------------------

    async def turn(self, jid: str, n: int = 1, prompt: str | None = None, messages: int = 1,
                   batch_limit: int | None = 10, seq: int | None = None) -> list[EventPayload]:
        """Turn ``n`` of ``jid``; ``seq``: its ordinal in the chat as the router numbers them (None: older logs)."""
        ids = [f"m{n}"] if messages == 1 else [f"m{n}.{i}" for i in range(messages)]
        t = AgentTurnRequested(turn_id=f"{jid}/t{n}", chat_jid=jid, group_folder=folder(jid), channel="whatsapp",
                               prompt=prompt or f"prompt {n}", message_ids=ids, previous_cursor="", cursor="",
                               batch_limit=batch_limit, seq=seq)
        return (await self.publish(jid, t))[1]

    async def task(self, jid: str, task_id: str, n: int = 1) -> list[EventPayload]:
        t = TaskRunRequested(task_id=task_id, run_id=f"{task_id}/run{n}", chat_jid=jid, group_folder=folder(jid),
                             prompt=f"do {task_id}", script=None)
        return (await self.publish(task_id, t))[1]

    async def output(self, run_id: str, jid: str, status: str = "success", idle: bool | None = None,
                     text: str | None = "hi") -> list[EventPayload]:
        """A result of the run; ``idle`` as the agent marks it (None: an agent that does not say)."""
        out = AgentOutputProduced(run_id=run_id, chat_jid=jid, group_folder=folder(jid), text=text,
                                  status=status, idle=idle)  # type: ignore[arg-type]
        return (await self.publish(run_id, out))[1]

    async def returned(self, run_id: str, jid: str, queued_run_ids: list[str] | None = None) -> list[EventPayload]:
        """The runner could not hand piped turns to the run."""
        r = AgentInputReturned(run_id=run_id, chat_jid=jid, group_folder=folder(jid), turn_ids=[],
                               queued_run_ids=queued_run_ids or ["x"], message_ids=[], reason="the run has ended")
        return (await self.publish(run_id, r))[1]

    async def finished(self, run_id: str, jid: str, status: str = "succeeded", **extra) -> list[EventPayload]:
        fin = AgentRunFinished(run_id=run_id, chat_jid=jid, group_folder=folder(jid), status=status,
                               **extra)  # type: ignore[arg-type]
        return (await self.publish(run_id, fin))[1]

    async def fire_timers(self) -> list[tuple[str, int]]:
        return await fire_due(self.deps)

    # -- reading ------------------------------------------------------------------------------------------

    async def events(self, event_type: str) -> list[EventPayload]:
        return [ce.payload() async for c in self.store.read() for ce in c.events if ce.eventtype == event_type]

    async def dispatched(self) -> list:
        return await self.events("RunDispatched")

    async def queue(self) -> RunQueue:
        """The queue replayed from the store by a fresh repository (no cache): what a restart would see."""
        q = await Repository(self.store, "check").get(RunQueue, QUEUE_ID)
        assert q is not None
        return q


def types(payloads: list[EventPayload]) -> list[str]:
    return [type(p).__name__ for p in payloads]


def only(payloads: list[EventPayload], event_type: str) -> list:
    return [p for p in payloads if type(p).__name__ == event_type]
