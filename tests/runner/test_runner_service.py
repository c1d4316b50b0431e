"""The runner service on a real nats-server with per-run users: restart recovery, piped turns that miss their
run, runs closed only when the queue asks, and sessions carried between runs. The agent is a small script speaking the container protocol (stdin
JSON, output markers, NATS input), run by the process backend."""

from __future__ import annotations

import sys
import textwrap

import nats
import pytest
from pydantic import SecretStr

from events.catalogue.queue import RunCloseRequested, RunCloseTimedOut, RunDispatched, RunInputPiped
from events.store.jetstream import JetStreamEventStore
from events.store.streams import StreamSettings, ensure_streams
from services.harness.config import Credentials
from services.harness.emit import append_emit
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsserver import EmbeddedNats
from services.harness.service import Emit
from services.runner import service as runner_service
from services.runner.sandbox.process import ProcessBackend
from tests.bus import context, events_of, running, settings
from tests.support import eventually, has_at_least

AGENT = textwrap.dedent('''
    import asyncio, json, sys
    import nats
    START, END = "---NANOCLAW_OUTPUT_START---", "---NANOCLAW_OUTPUT_END---"
    def mark(**block):
        print(START, json.dumps(block), END, sep="\\n", flush=True)
    async def main():
        spec = json.loads(sys.stdin.read())
        n = spec["nats"]
        nc = await nats.connect(n["url"], user=n["user"], password=n["password"], inbox_prefix=n["inbox_prefix"])
        done = asyncio.Event()
        async def on_input(msg):
            body = json.loads(msg.data)
            await msg.respond(b'{"ok": true}')
            if body["type"] == "close":
                done.set()
            else:
                mark(status="success", result="echo: " + body["text"], newSessionId="s-1")
        if spec["prompt"] == "deaf":  # never takes input or a close (cut off from the bus)
            mark(status="success", result="deaf", newSessionId="s-1")
            await asyncio.Event().wait()
        if spec["prompt"] == "late":  # answers, then subscribes only 2.5 s later (as after a nats-server restart)
            mark(status="success", result="late", newSessionId="s-1")
            await asyncio.sleep(2.5)
        await nc.subscribe(n["input_subject"], cb=on_input)
        if spec["prompt"] == "late":
            await done.wait()
            return
        if spec["prompt"] == "lost-session":
            mark(status="error", result=None, error="No conversation found with session ID " + str(spec["session_id"]))
            sys.exit(1)
        mark(status="success", result="got: " + spec["prompt"] + " session=" + str(spec["session_id"]), newSessionId="s-1")
        await done.wait()
        await nc.close()
    asyncio.run(main())
''')


@pytest.fixture
def server(tmp_path):
    s = EmbeddedNats(tmp_path / "nats", sync_always=False, auth=EmbeddedAuth(tmp_path / "auth.conf")).start()
    yield s
    s.stop()


@pytest.fixture
def agent_script(tmp_path):
    path = tmp_path / "fake_agent.py"
    path.write_text(AGENT)
    return path


def build_with(script):
    def build(ctx):
        svc = runner_service.build(ctx)
        manager = svc.deps.manager
        manager.backend = ProcessBackend(agent_argv=(sys.executable, str(script)))
        return svc
    return build


async def bus(server, tmp_path, **runner):
    nc = await nats.connect(server.admin_url)
    await ensure_streams(nc.jetstream(), StreamSettings(duplicate_window_s=60))
    store = JetStreamEventStore(nc)
    s = settings(tmp_path, runner={"backend": "process", **runner})
    ctx = context(nc, store, s, Credentials(run_token_key=SecretStr("k" * 32)))
    ctx.run_identities = server.auth
    return nc, store, ctx


def pipe(run_id: str, prompt: str, message_ids: list[str], folder: str = "shop") -> Emit:
    return Emit.append("default", RunInputPiped(run_id=run_id, chat_jid=f"http:{folder}", group_folder=folder,
                                                prompt=prompt, turn_ids=[f"turn-{message_ids[0]}"],
                                                queued_run_ids=[f"q-{message_ids[0]}"], message_ids=message_ids))


def close(run_id: str, folder: str = "shop") -> Emit:
    return Emit.append("default", RunCloseRequested(run_id=run_id, chat_jid=f"http:{folder}", group_folder=folder,
                                                    reason="idle_timeout"))


def dispatch(run_id: str, prompt: str = "hello", folder: str = "shop") -> Emit:
    return Emit.append("default", RunDispatched(run_id=run_id, chat_jid=f"http:{folder}", group_folder=folder,
                                                prompt=prompt, turn_ids=[f"turn-{run_id}"]))


async def test_a_dispatched_run_starts_answers_and_takes_piped_turns_in_order_once(server, tmp_path, agent_script):
    nc, store, ctx = await bus(server, tmp_path)
    async with running(build_with(agent_script), ctx):
        await append_emit(store, dispatch("r1"), source="queue", msg_id="d1")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
        await append_emit(store, pipe("r1", "more", ["m2"]), source="queue", msg_id="p1")
        await append_emit(store, pipe("r1", "and more", ["m3"]), source="queue", msg_id="p2")
        await eventually(lambda: has_at_least(events_of(store, "AgentInputDelivered"), 2))
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 3))
    texts = [o.text for o in await events_of(store, "AgentOutputProduced")]
    assert texts == ["got: hello session=None", "echo: more", "echo: and more"]
    assert [d.message_ids for d in await events_of(store, "AgentInputDelivered")] == [["m2"], ["m3"]]
    await nc.close()


async def test_the_runner_closes_a_run_only_when_the_queue_asks(server, tmp_path, agent_script):
    nc, store, ctx = await bus(server, tmp_path)
    async with running(build_with(agent_script), ctx):
        await append_emit(store, dispatch("m1", folder="chat"), source="queue", msg_id="d1")
        await append_emit(store, Emit.append("default", RunDispatched(
            run_id="t1", chat_jid="http:shop", group_folder="shop", prompt="digest", kind="task", task_id="task-1")),
            source="queue", msg_id="d2")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 2))
        await append_emit(store, close("t1"), source="queue", msg_id="c1")
        await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 1))
        [fin] = await events_of(store, "AgentRunFinished")
        assert (fin.run_id, fin.status) == ("t1", "succeeded")  # m1, idle longer than t1, is still open
        await append_emit(store, close("m1", folder="chat"), source="queue", msg_id="c2")
        await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 2))
    assert [f.run_id for f in await events_of(store, "AgentRunFinished")] == ["t1", "m1"]
    await nc.close()


async def test_piped_turns_for_an_ended_run_are_returned_with_their_turns(server, tmp_path, agent_script):
    nc, store, ctx = await bus(server, tmp_path)
    async with running(build_with(agent_script), ctx):
        await append_emit(store, pipe("gone", "late", ["m9"]), source="queue", msg_id="p9")
        await eventually(lambda: has_at_least(events_of(store, "AgentInputReturned"), 1))
    returned = (await events_of(store, "AgentInputReturned"))[0]
    assert (returned.message_ids, returned.turn_ids, returned.queued_run_ids) == (["m9"], ["turn-m9"], ["q-m9"])
    assert await events_of(store, "AgentInputRejected") == []
    await nc.close()


async def test_the_next_run_resumes_the_groups_session_and_a_lost_session_is_reset(server, tmp_path, agent_script):
    nc, store, ctx = await bus(server, tmp_path)
    async with running(build_with(agent_script), ctx) as runner:
        await append_emit(store, dispatch("r1"), source="queue", msg_id="d1")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
        await runner.service.deps.manager.close("r1")
        await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 1))
        await append_emit(store, dispatch("r2", prompt="lost-session"), source="queue", msg_id="d2")
        await eventually(lambda: has_at_least(events_of(store, "AgentSessionReset"), 1))
    reset = (await events_of(store, "AgentSessionReset"))[0]
    assert reset.session_id == "s-1" and reset.group_folder == "shop"
    finished = await events_of(store, "AgentRunFinished")
    assert [f.status for f in finished] == ["succeeded", "failed"]
    await nc.close()


async def test_after_a_restart_a_started_run_finishes_as_interrupted_and_a_waiting_one_starts(server, tmp_path, agent_script):
    nc, store, ctx = await bus(server, tmp_path)
    async with running(build_with(agent_script), ctx) as runner:
        await append_emit(store, dispatch("r1"), source="queue", msg_id="d1")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
        runner.service.deps.manager.backend.kind = "detached"  # stop like a crash: leave the run behind
    # While the runner is down the queue dispatches another run.
    await append_emit(store, dispatch("r2", folder="cafe"), source="queue", msg_id="d2")
    async with running(build_with(agent_script), ctx):
        await eventually(lambda: has_at_least(events_of(store, "AgentRunStarted"), 2))
        await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 1))
    finished = {f.run_id: f for f in await events_of(store, "AgentRunFinished")}
    assert finished["r1"].interrupted and finished["r1"].status == "failed" and finished["r1"].output_delivered
    assert [s.run_id for s in await events_of(store, "AgentRunStarted")] == ["r1", "r2"]
    await nc.close()


async def test_a_close_the_agent_cannot_take_yet_is_sent_again_until_it_does(server, tmp_path, agent_script):
    """Found by the fault campaign: after a nats-server restart the idle agent had not resubscribed, the one close
    got no responder, and the run (and its group) stayed open until the hard timeout."""
    nc, store, ctx = await bus(server, tmp_path)
    async with running(build_with(agent_script), ctx):
        await append_emit(store, dispatch("r1", prompt="late"), source="queue", msg_id="d1")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
        await append_emit(store, close("r1"), source="queue", msg_id="c1")
        await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 1), timeout=15)
    [fin] = await events_of(store, "AgentRunFinished")
    assert (fin.run_id, fin.status, fin.error) == ("r1", "succeeded", None)  # it took the close and exited
    await nc.close()


async def test_a_run_that_never_takes_its_close_is_stopped_after_the_close_grace(server, tmp_path, agent_script):
    nc, store, ctx = await bus(server, tmp_path, close_grace_s=2, stop_grace_s=1)
    async with running(build_with(agent_script), ctx) as runner:
        await append_emit(store, dispatch("r1", prompt="deaf"), source="queue", msg_id="d1")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
        await append_emit(store, close("r1"), source="queue", msg_id="c1")
        await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 1), timeout=15)
        assert runner.service.deps.manager.active == {}
    [fin] = await events_of(store, "AgentRunFinished")
    assert (fin.run_id, fin.status) == ("r1", "succeeded")  # it had answered: v1's idle clean-up
    await nc.close()


async def test_a_run_the_queue_released_after_its_close_deadline_is_stopped_at_once(server, tmp_path, agent_script):
    nc, store, ctx = await bus(server, tmp_path, close_grace_s=600)
    async with running(build_with(agent_script), ctx):
        await append_emit(store, dispatch("r1", prompt="deaf"), source="queue", msg_id="d1")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
        await append_emit(store, close("r1"), source="queue", msg_id="c1")
        await append_emit(store, Emit.append("default", RunCloseTimedOut(
            run_id="r1", chat_jid="http:shop", group_folder="shop", waited_ms=120_000)), source="queue", msg_id="x1")
        await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), 1), timeout=15)
    [fin] = await events_of(store, "AgentRunFinished")
    assert fin.run_id == "r1"
    await nc.close()
