"""Live agent runs: start a sandbox for a dispatched run, turn its output blocks into events, forward
follow-ups and close over NATS, and finish the run (as NanoClaw v1 runContainerAgent, event-sourced).

Events a run appends (aggregate ``agent/run/<run_id>``, message ids derived from the run id, so a repeat is
stored once): ``AgentRunStarted`` → ``AgentOutputProduced``… → ``AgentRunFinished``; ``AgentSessionReset``
when the CLI can no longer resume the group's session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from nats.aio.client import Client

from events.catalogue.agent import AgentOutputProduced, AgentRunFinished, AgentRunStarted, AgentSessionReset
from events.catalogue.base import EventPayload
from events.catalogue.output_text import is_delivered
from events.catalogue.queue import RunDispatched
from events.store.port import EventStore
from services.harness import run_token
from services.harness.emit import append_emit
from services.harness.natsauth import RunIdentity, RunIdentityIssuer
from services.harness.refusals import record_refusal
from services.harness.safepath import UnsafePath
from services.harness.service import Emit
from services.runner.config import DEFAULT_IDLE_TIMEOUT_MS, RunnerConfig
from services.runner.mount_allowlist import MountAllowlistLoader
from services.runner.mounts import RunnerPaths, build_mounts, prepare_dirs
from services.runner.sandbox.base import GROUP_LABEL, RUN_ID_LABEL, SandboxBackend, SandboxSpec, container_name
from services.runner.supervisor import supervise

log = logging.getLogger("nanoclaw.runner")

# v1 runAgent: these errors mean the stored session cannot be resumed; the next run starts fresh.
_LOST_SESSION = re.compile(r"no conversation found|ENOENT.*\.jsonl|session.*not found", re.IGNORECASE)
_INPUT_TIMEOUT_S = 5.0
_CLOSE_RETRY_S = 1.0  # between close attempts the agent did not take


@dataclass(frozen=True)
class Endpoints:
    """Where a sandbox reaches the bus and the model proxy (loopback for the process backend; the internal
    network's gateway, relayed, for containers; names on the deployment's network in compose). ``nats_url``:
    one URL or several, comma-separated (a cluster's nodes)."""

    nats_url: str
    model_url: str


@dataclass
class GroupInfo:
    container_config: dict[str, Any] | None = None


@dataclass
class ActiveRun:
    dispatch: RunDispatched
    name: str
    identity: RunIdentity
    resumed_session: str | None = None
    outputs: int = 0
    last_error: str | None = None  # the agent's own error text (the exit status says only "exited with 1")
    delivered: bool = False
    closing: bool = False
    task: asyncio.Task | None = None
    inputs: asyncio.Lock = field(default_factory=asyncio.Lock)  # piped turns go in one at a time, in order
    taken: set[str] = field(default_factory=set)  # pipes the agent took (a redelivered pipe is not sent again)
    closer: asyncio.Task | None = None  # sees the close through (:meth:`RunManager.close`)
    stopped: str | None = None  # why the runner stopped the sandbox itself after a close (None: it did not)


@dataclass
class RunManager:
    """Args:
        backend: the sandbox runtime. issuer: per-run NATS identities. endpoints: resolved at start.
        token_key: HMAC key for per-run model-proxy tokens (:mod:`services.harness.run_token`).
    """

    config: RunnerConfig
    backend: SandboxBackend
    store: EventStore
    nc: Client
    issuer: RunIdentityIssuer
    paths: RunnerPaths
    allowlist: MountAllowlistLoader
    token_key: bytes
    assistant_name: str
    timezone: str
    endpoints: Endpoints | None = None
    idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS  # the queue's, for the hard-timeout floor only
    clock: Callable[[], float] = time.time
    active: dict[str, ActiveRun] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)

    async def start(self, d: RunDispatched, group: GroupInfo, session_id: str | None) -> None:
        """Start ``d`` unless it is running or finished here. Appends ``AgentRunStarted`` before any output;
        a sandbox that cannot be spawned is a finished, failed run (v1 "Container spawn error"), and so is a run
        whose host directories cannot be prepared safely (a ``host_path`` refusal is recorded)."""
        if self.endpoints is None:
            raise RuntimeError("the runner is not ready (its endpoints are resolved at start)")
        if d.run_id in self.active or d.run_id in self.finished:
            return  # a redelivered dispatch
        name = container_name(d.group_folder, int(self.clock() * 1000))
        try:
            prepare_dirs(d.group_folder, self.paths, owner=self.backend.host_owner())
            mounts = build_mounts(d.group_folder, d.is_main, group.container_config, self.paths, self.allowlist)
        except (UnsafePath, OSError) as exc:
            await self._unprepared(d, name, exc)
            return
        identity = await self.issuer.issue(d.run_id, d.group_folder)
        env = {"TZ": self.timezone}
        if self.backend.kind == "process":
            env["IS_SANDBOX"] = "1"  # trusted mode may run as root, where the CLI otherwise refuses bypass mode
        spec = SandboxSpec(name=name, image=self.config.image, mounts=mounts, env=env,
                           labels={RUN_ID_LABEL: d.run_id, GROUP_LABEL: d.group_folder})
        run = ActiveRun(d, name, identity, resumed_session=session_id)
        self.active[d.run_id] = run
        hard_ms = self.config.hard_timeout_ms(group.container_config, self.idle_timeout_ms)
        await self._append(d.run_id, self._started(d, name), "started")
        payload = self._input(d, identity, session_id, hard_ms)
        run.task = asyncio.create_task(self._supervise(run, spec, payload, hard_ms), name=f"run-{d.run_id}")

    def _started(self, d: RunDispatched, name: str) -> AgentRunStarted:
        return AgentRunStarted(run_id=d.run_id, chat_jid=d.chat_jid, group_folder=d.group_folder, kind=d.kind,
                               turn_id=d.turn_ids[0] if d.turn_ids else None, task_id=d.task_id,
                               backend=self.backend.kind, container=name)

    async def _unprepared(self, d: RunDispatched, name: str, exc: Exception) -> None:
        """The group's directories could not be prepared: the run fails at once with the reason (the queue's retry
        and the router's roll-back apply as for any failed run) and nothing is started. Something the agent left
        in its own tree that the host refuses to act through is also a ``host_path`` security refusal."""
        error = f"cannot prepare the group's host directories: {exc}"
        log.error("run %s: %s", d.run_id, error)
        if isinstance(exc, UnsafePath):
            await record_refusal(self.store, service="runner", group_folder=d.group_folder, run_id=d.run_id,
                                 surface="host_path", operation=f"prepare {exc.path}", reason=str(exc))
        await self._append(d.run_id, self._started(d, name), "started")
        await self._append(d.run_id, AgentRunFinished(run_id=d.run_id, chat_jid=d.chat_jid, group_folder=d.group_folder,
                                                      status="failed", output_delivered=False, error=error[:2000],
                                                      duration_ms=0), "finished")
        self.finished.add(d.run_id)  # last: if an append failed, the redelivered dispatch tries again

    def _input(self, d: RunDispatched, identity: RunIdentity, session_id: str | None, hard_ms: int) -> bytes:
        assert self.endpoints is not None
        token = run_token.mint(self.token_key, d.run_id, d.group_folder, self.clock() + hard_ms / 1000 + 600)
        return json.dumps({
            "run_id": d.run_id, "prompt": d.prompt, "session_id": session_id, "group_folder": d.group_folder,
            "chat_jid": d.chat_jid, "is_main": d.is_main, "is_scheduled_task": d.kind == "task",
            "assistant_name": self.assistant_name, "script": d.script,
            "nats": identity.as_input(self.endpoints.nats_url),
            "model": {"base_url": self.endpoints.model_url, "token": token},
        }).encode()

    async def _supervise(self, run: ActiveRun, spec: SandboxSpec, payload: bytes, hard_ms: int) -> None:
        d = run.dispatch
        try:
            outcome = await supervise(self.backend, spec, payload, on_output=lambda block: self._on_output(run, block),
                                      hard_timeout_ms=hard_ms, stop_grace_s=self.config.stop_grace_s,
                                      log_dir=self.paths.run_log_dir(d.group_folder),
                                      max_output_bytes=self.config.max_output_bytes, group=d.group_folder,
                                      is_main=d.is_main)
            status, error, duration = outcome.status, outcome.error, outcome.duration_ms
            if run.stopped and status != "succeeded":
                # stopped after a close the agent did not act on: with output, that is v1's idle clean-up (the
                # hard timeout after output is a success too); without any, the run failed, and says why
                status = "succeeded" if run.outputs else "failed"
                error = None if run.outputs else f"{run.stopped} ({error})"
        except Exception as exc:  # noqa: BLE001 - whatever happened, the run must finish (the queue waits)
            log.exception("run %s crashed", d.run_id)
            status, error, duration = "failed", f"runner error: {type(exc).__name__}: {exc}", None
        finally:
            await self.issuer.revoke(d.run_id)
        try:
            reason = " | ".join(e for e in (run.last_error, error) if e)
            if status != "succeeded" and run.resumed_session and _LOST_SESSION.search(reason):
                reset = AgentSessionReset(group_folder=d.group_folder, session_id=run.resumed_session, reason=reason[:500])
                await self._append(d.group_folder, reset, f"{d.run_id}:session-reset")
            await self._append(d.run_id, AgentRunFinished(run_id=d.run_id, chat_jid=d.chat_jid, group_folder=d.group_folder,
                                                          status=status, output_delivered=run.delivered, error=error,
                                                          duration_ms=duration), "finished")
        finally:
            self.active.pop(d.run_id, None)
            self.finished.add(d.run_id)

    async def _on_output(self, run: ActiveRun, block: dict[str, Any]) -> None:
        d = run.dispatch
        text = block.get("result") if isinstance(block.get("result"), str) else None
        status = "error" if block.get("status") == "error" else "success"
        session = block.get("newSessionId") if isinstance(block.get("newSessionId"), str) else None
        error = str(block["error"])[:2000] if block.get("error") else None
        # the agent marks the end of a query (sandbox/agent/protocol.py); None: an agent that does not say
        idle = block["idle"] if isinstance(block.get("idle"), bool) else None
        run.outputs += 1
        run.last_error = error or run.last_error
        if is_delivered(text):  # the same rule the router sends by
            run.delivered = True
        await self._append(d.run_id, AgentOutputProduced(run_id=d.run_id, chat_jid=d.chat_jid, group_folder=d.group_folder,
                                                         channel=d.channel, text=text, status=status, session_id=session,
                                                         error=error, idle=idle), f"out:{run.outputs}")
        # No idle timer here: the queue follows these outputs and closes idle runs (RunCloseRequested).

    async def deliver_input(self, run_id: str, text: str, key: str = "") -> tuple[bool, str]:
        """Hand piped turns (``RunInputPiped``: the queue pipes only into a run that idles, so the agent is
        ready) to a live message run, one at a time in the order they come. ``key``: the pipe's identity; a pipe
        already taken is reported taken again without a second send. Returns (taken, reason if not)."""
        run = self.active.get(run_id)
        if run is None:
            return False, "the run has ended"
        if run.dispatch.kind != "message":
            return False, "task runs take no follow-ups"  # v1 §13: task containers refuse piped messages
        async with run.inputs:
            if key and key in run.taken:
                return True, ""
            if run.closing or run_id not in self.active:
                return False, "the run is closing"
            ok, reason = await self._request(run, {"type": "message", "text": text})
            if ok and key:
                run.taken.add(key)
            return ok, reason

    async def close(self, run_id: str) -> None:
        """Ask the agent to finish its current query and exit (v1 ``_close``), and see that it does: a close
        the agent does not take (no responder: it has not resubscribed after a nats-server restart; a timeout)
        is sent again every second, and a run still alive ``close_grace_s`` after the close is stopped, so its
        ``AgentRunFinished`` always comes and the queue frees the group. Returns at once (the close goes on in
        the background; a repeat while it does changes nothing)."""
        run = self.active.get(run_id)
        if run is None or run.closing:
            return
        run.closing = True
        run.closer = asyncio.create_task(self._see_close_through(run), name=f"close-{run_id}")

    async def _see_close_through(self, run: ActiveRun) -> None:
        loop = asyncio.get_running_loop()
        grace = self.config.close_grace_s
        deadline = loop.time() + grace
        taken = False
        while self._alive(run) and loop.time() < deadline:
            if run.task is None:  # close came while the run was being started
                await asyncio.sleep(0.05)
                continue
            if not taken:
                taken, reason = await self._request(run, {"type": "close"})
                if not taken:
                    log.info("close of run %s not taken (%s); trying again", run.dispatch.run_id, reason)
            left = deadline - loop.time()
            if left > 0 and self._alive(run):
                await asyncio.wait({run.task}, timeout=left if taken else min(left, _CLOSE_RETRY_S))
        if self._alive(run):
            await self.stop(run.dispatch.run_id, f"the agent did not end within {grace:g} s of its close")

    def _alive(self, run: ActiveRun) -> bool:
        return self.active.get(run.dispatch.run_id) is run and not (run.task is not None and run.task.done())

    async def stop(self, run_id: str, why: str) -> None:
        """Stop the run's sandbox now (``stop_grace_s``, then killed); its ``AgentRunFinished`` follows as for any
        run that ends. Used when a close is not acted on, and when the queue gave up waiting
        (``RunCloseTimedOut``). No-op for a run not live here."""
        run = self.active.get(run_id)
        if run is None:
            return
        run.closing = True
        run.stopped = run.stopped or why
        log.warning("run %s: %s; stopping its sandbox %s", run_id, why, run.name)
        try:
            await self.backend.stop(run.name, self.config.stop_grace_s)
        except Exception as exc:  # noqa: BLE001 - the hard timeout still ends it; the queue's deadline frees the group
            log.error("could not stop the sandbox %s of run %s: %s", run.name, run_id, exc)

    async def _request(self, run: ActiveRun, body: dict[str, Any]) -> tuple[bool, str]:
        try:
            reply = await self.nc.request(run.identity.input_subject, json.dumps(body).encode(), timeout=_INPUT_TIMEOUT_S)
            answer = json.loads(reply.data or b"{}")
        except Exception as exc:  # noqa: BLE001 - no responder, timeout, bad reply: the input did not arrive
            return False, f"the agent did not take the input ({type(exc).__name__})"
        return (True, "") if answer.get("ok") else (False, str(answer.get("error") or "refused by the agent"))

    async def _append(self, aggregate_id: str, payload: EventPayload, key: str) -> None:
        await append_emit(self.store, Emit.append(aggregate_id, payload), source="runner",
                          msg_id=f"run:{payload.__class__.__name__}:{aggregate_id}:{key}")

    async def shutdown(self) -> None:
        """The service is stopping. Sandboxes are detached, as v1 does (a restart's recovery stops them and
        finishes their runs as interrupted), except host processes, which cannot outlive us: those are stopped
        and their runs finished now."""
        for r in self.active.values():
            if r.closer is not None:
                r.closer.cancel()  # a restarted runner's recovery ends these runs
        if self.backend.kind != "process":
            return
        runs = list(self.active.values())
        await asyncio.gather(*(self.backend.stop(r.name, self.config.stop_grace_s) for r in runs), return_exceptions=True)
        await asyncio.gather(*(r.task for r in runs if r.task), return_exceptions=True)
