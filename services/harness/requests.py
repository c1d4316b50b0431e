"""Serve a service's NATS requests (the agents' IPC tools): check the reply subject, decode JSON, call the
handler, store its events, then reply. A bad request or a failing handler gets an error reply naming the
problem; the service keeps running and nothing is half-written (events are stored before the reply says "ok").
A reply subject that is not an inbox is refused before anything else (services/harness/replies.py), and so is
what a handler refuses as not allowed; both are recorded as ``SandboxRequestRefused`` events."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from events.store.port import EventStore
from events.tasks import cancel_and_wait
from services.harness.logging import get_logger
from services.harness.connect import subscriptions_registered
from services.harness.emit import append_emit
from services.harness.natsauth import IPC_PREFIX
from services.harness.refusals import record_refusal
from services.harness.replies import Requester, reply_problem
from services.harness.service import Reply, Request, Service


class RequestServer:
    """Subscribes ``service.requests`` in the queue group ``svc_<name>``.

    ``readmodel``: caught up to the log's end before each handler (so a group registered a moment ago is
    known). The request id is the ``Nc-Request-Id`` header when the caller sends one (a retried tool call is
    then stored once), else a fresh uuid.
    """

    def __init__(self, service: Service, nc: Client, store: EventStore):
        self.service, self.nc, self.store = service, nc, store
        self.log = get_logger("nanoclaw.harness", service=service.name)
        self._subs: list[Any] = []
        self._inflight: set[asyncio.Task] = set()

    async def start(self) -> None:
        for pattern, handler in self.service.requests.items():
            async def serve(msg: Msg, handler=handler) -> None:
                # nats-py runs one subscription's callbacks one after another; a request that waits (for a
                # receipt) must not hold up the others.
                task = asyncio.create_task(self._serve_guarded(msg, handler))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            self._subs.append(await self.nc.subscribe(pattern, queue=f"svc_{self.service.name}", cb=serve))
        if self._subs:
            # The server has the subscriptions before the service reports ready: otherwise a sandbox's first
            # tool call right after start can get "no responders".
            await subscriptions_registered(self.nc)

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        await cancel_and_wait(list(self._inflight))

    async def _serve_guarded(self, msg: Msg, handler) -> None:
        """:meth:`_serve`; what it raises (a refusal or an answer that could not be sent) is logged and answered
        if possible, never left as an unretrieved task exception with the requester waiting for nothing."""
        try:
            await self._serve(msg, handler)
        except Exception as exc:  # noqa: BLE001 - the service keeps serving
            self.log.error("request not answered", subject=msg.subject, error=f"{type(exc).__name__}: {exc}",
                           exc_info=True)
            if msg.reply and reply_problem(msg.reply) is None:
                try:
                    await msg.respond(json.dumps(Reply.failure(
                        f"{self.service.name} could not handle the request: {type(exc).__name__}").body()).encode())
                except Exception:  # noqa: BLE001 - no connection: the requester times out
                    pass

    async def _serve(self, msg: Msg, handler) -> None:
        requester = Requester.of(msg.headers)
        if (problem := reply_problem(msg.reply)) is not None:
            # Not even an error answer: answering on that subject is exactly what must not happen.
            return await self._record_refusal(msg, requester, "reply_subject", problem)
        request_id = (msg.headers or {}).get("Nc-Request-Id") or str(uuid.uuid4())
        try:
            data = json.loads(msg.data or b"{}")
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        except ValueError as exc:
            return await self._respond(msg, Reply.failure(f"request on {msg.subject} is not a JSON object: {exc}"))
        except RecursionError:  # the decoder recurses per level; not a ValueError (events/shape.py)
            return await self._respond(msg, Reply.failure(
                f"request on {msg.subject} is not a JSON object: nested too deeply to parse"))
        try:
            if self.service.readmodel is not None:
                await self.service.readmodel.wait_for(await self.store.last_seq())
            reply = await handler(Request(msg.subject, data, request_id, requester.run_id), self.service.deps)
            for i, emit in enumerate(reply.emits):
                await append_emit(self.store, emit, source=self.service.name, msg_id=f"req:{request_id}:{self.service.name}:{i}")
            if reply.then is not None:
                reply = await reply.then()
        except Exception as exc:  # noqa: BLE001 - the requester gets the error; the service keeps serving
            self.log.warning("request failed", subject=msg.subject, error=f"{type(exc).__name__}: {exc}")
            reply = Reply.failure(f"{self.service.name} could not handle the request: {type(exc).__name__}: {exc}")
        if reply.refused:
            await self._record_refusal(msg, requester, "ipc", reply.error or "refused")
        await self._respond(msg, reply)

    async def _record_refusal(self, msg: Msg, requester: Requester, surface: str, reason: str) -> None:
        tokens = msg.subject.split(".")
        # nc.ipc.<folder>.<tool>: the folder token is the identity the server enforces for sandboxes.
        folder, operation = (tokens[2], tokens[3]) if msg.subject.startswith(IPC_PREFIX + ".") and len(tokens) == 4 \
            else ("", msg.subject)
        await record_refusal(self.store, service=self.service.name, group_folder=folder, run_id=requester.run_id,
                             surface=surface, operation=operation, reason=reason)

    async def _respond(self, msg: Msg, reply: Reply) -> None:
        if not reply.ok:
            self.log.info("request refused", subject=msg.subject, error=reply.error)
        if msg.reply:
            await msg.respond(json.dumps(reply.body()).encode())
