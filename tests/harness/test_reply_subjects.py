"""A request's reply subject is the requester's choice, and a service answers with its own rights: the harness
answers only on inboxes and server-made response routes, and sandboxes reach services only across accounts, so
no request can make a service write into the event log or call the JetStream API (issue 20)."""

from __future__ import annotations

import json

import nats
import pytest
from nats.js import api

from events.envelope import decode_events
from events.store.jetstream import JetStreamEventStore
from events.store.streams import StreamSettings, ensure_streams
from events.subjects import EVENT_STREAM
from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsperms import ADMIN
from services.harness.natsserver import EmbeddedNats
from services.harness.replies import Requester, reply_problem
from services.harness.runner import ServiceRunner
from services.harness.service import Reply, Request, Service
from tests.bus import FAST, events_of
from tests.support import eventually

FORGED = ["nc.evt.router.conversation.http:beta.AgentTurnRequested", f"$JS.API.CONSUMER.DELETE.{EVENT_STREAM}.svc_probe",
          "$SYS.REQ.SERVER.PING", "nc.dlq.router", "nc.ipc.other.send_message", "nc.run.other.r1.input", "_INBOX.*",
          "_INBOX.>", "_R_", "inbox.x"]


@pytest.mark.parametrize("reply", FORGED)
def test_a_reply_subject_that_is_not_an_inbox_or_a_server_route_is_a_problem(reply):
    assert reply_problem(reply) is not None


@pytest.mark.parametrize("reply", ["_INBOX.abc.1", "_INBOX_router.x7", "_INBOX_3f2a-9c.k", "_R_.e9LQlX.kyJep8", ""])
def test_inboxes_server_routes_and_no_reply_at_all_are_fine(reply):
    assert reply_problem(reply) is None


def test_the_requester_is_read_from_the_servers_request_info_and_never_fails():
    info = {"Nats-Request-Info": json.dumps({"acc": "SANDBOX", "user": "run-4c1d", "rtt": 1})}
    assert Requester.of(info).run_id == "4c1d" and Requester.of(info).account == "SANDBOX"
    assert Requester.of({"Nats-Request-Info": "{not json"}) == Requester()
    assert Requester.of({"Nats-Request-Info": "[1]"}).run_id is None
    assert Requester.of(None).run_id is None
    assert Requester.of({"Nats-Request-Info": json.dumps({"user": "admin"})}).run_id is None


@pytest.fixture
def server(tmp_path):
    s = EmbeddedNats(tmp_path / "nats", sync_always=False, auth=EmbeddedAuth(tmp_path / "auth.conf")).start()
    yield s
    s.stop()


class Probe:
    """A service answering ``nc.ipc.*.echo`` (and refusing ``nc.ipc.*.secret``), recording what it handled."""

    def __init__(self) -> None:
        self.handled: list[Request] = []

    async def echo(self, req: Request, _deps) -> Reply:
        self.handled.append(req)
        return Reply.success({"echo": req.data, "run_id": req.run_id})

    async def secret(self, req: Request, _deps) -> Reply:
        self.handled.append(req)
        return Reply.refusal("only the main group may read secrets")

    def service(self) -> Service:
        return Service("probe", requests={"nc.ipc.*.echo": self.echo, "nc.ipc.*.secret": self.secret})


@pytest.fixture
async def probe(server):
    nc = await nats.connect(server.admin_url)
    await ensure_streams(nc.jetstream(), StreamSettings(duplicate_window_s=60))
    store = JetStreamEventStore(nc)
    # A durable consumer for a forged `$JS.API.CONSUMER.DELETE…` reply subject to aim at.
    await nc.jetstream().add_consumer(EVENT_STREAM, api.ConsumerConfig(durable_name="svc_probe",
                                                                       ack_policy=api.AckPolicy.EXPLICIT))
    p = Probe()
    runner = ServiceRunner(p.service(), nc, store, FAST)
    await runner.start()
    yield p, nc, store
    await runner.stop()
    await nc.close()


async def stream_holds_only_events(nc) -> None:
    """Every message in the event stream is a commit (what the forged replies wrote before the fix was not)."""
    last = (await nc.jetstream().stream_info(EVENT_STREAM)).state.last_seq
    for seq in range(1, last + 1):
        decode_events((await nc.jetstream().get_msg(EVENT_STREAM, seq)).data)


async def refusals(store) -> list:
    return await events_of(store, "SandboxRequestRefused")


async def test_a_forged_reply_subject_from_the_services_account_is_refused_before_the_handler_runs(probe):
    p, nc, store = probe
    js = nc.jetstream()
    for reply in FORGED[:3]:
        await nc.publish("nc.ipc.family.echo", b'{"x": 1}', reply=reply)
    async def three() -> bool:
        return len(await refusals(store)) == 3
    await eventually(three)
    assert p.handled == []
    assert (await js.consumer_info(EVENT_STREAM, "svc_probe")).name == "svc_probe"  # the delete was never sent
    await stream_holds_only_events(nc)
    refused = await refusals(store)
    assert {r.surface for r in refused} == {"reply_subject"} and {r.group_folder for r in refused} == {"family"}
    assert {r.operation for r in refused} == {"echo"} and all("not an inbox" in r.reason for r in refused)
    # The service keeps answering proper requests.
    answer = json.loads((await nc.request("nc.ipc.family.echo", b'{"x": 2}', timeout=10)).data)
    assert answer == {"ok": True, "result": {"echo": {"x": 2}, "run_id": None}}


async def connect_run(server: EmbeddedNats, identity):
    return await nats.connect(server.url, user=identity.user, password=identity.password,
                              inbox_prefix=identity.inbox_prefix, allow_reconnect=False)


async def test_a_sandbox_is_answered_only_in_its_own_account_whatever_reply_subject_it_sets(server, probe):
    p, nc, store = probe
    identity = await server.auth.issue("3f2a", "family")
    run = await connect_run(server, identity)
    before = (await nc.jetstream().stream_info(EVENT_STREAM)).state.last_seq
    for reply in FORGED[:2]:
        await run.publish("nc.ipc.family.echo", b'{"forged": true}', reply=reply)
    answer = json.loads((await run.request("nc.ipc.family.echo", b'{"x": 3}', timeout=10)).data)
    # The server attests the run (Nats-Request-Info), and rewrote every reply subject into a route back to the
    # sandbox account: the handler ran for all three, and none of its answers reached the services' account.
    assert answer == {"ok": True, "result": {"echo": {"x": 3}, "run_id": "3f2a"}}
    await eventually(lambda: len(p.handled) == 3, detail=p.handled)
    assert {r.run_id for r in p.handled} == {"3f2a"}
    assert (await nc.jetstream().stream_info(EVENT_STREAM)).state.last_seq == before
    assert (await nc.jetstream().consumer_info(EVENT_STREAM, "svc_probe")).name == "svc_probe"
    await run.close()


async def test_a_request_the_handler_refuses_as_not_allowed_is_recorded_with_its_run(server, probe):
    p, nc, store = probe
    identity = await server.auth.issue("77aa", "family")
    run = await connect_run(server, identity)
    answer = json.loads((await run.request("nc.ipc.family.secret", b"{}", timeout=10)).data)
    assert answer == {"ok": False, "error": "only the main group may read secrets"}
    [refusal] = await refusals(store)
    assert (refusal.service, refusal.group_folder, refusal.run_id, refusal.surface, refusal.operation) == \
        ("probe", "family", "77aa", "ipc", "secret")
    await run.close()


def test_the_admin_is_the_only_identity_without_a_permissions_block(server):
    text = server.auth.path.read_text()
    admin = next(line for line in text.splitlines() if f'"user": "{ADMIN}"' in line)
    assert "permissions" not in admin
    assert text.count('"permissions"') == len(server.auth.passwords) - 1
    assert server.auth._issuer_seed not in text  # only the callout issuer's public key is written
