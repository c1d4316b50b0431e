"""The deployment's NATS identities against a real nats-server started from the generated configuration
(no Docker): least privilege per service, admin-only stream administration, a read-only reader, and per-run
sandbox users minted through the auth callout, confined to their own group. The services that answer agent
tools (router, scheduler, governance, the broker's ``ext_call``) and append on subjects shared with another
context run here for real under their identities: a missing permission would only show as a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import nats
import pytest
import yaml
from nats.js import api
from nats.js.errors import APIError

from deploy.identities import Identities
from services.harness.natsperms import SERVICE_ACCESS, inbox_prefix, permissions_for
from events.catalogue import all_event_types, payload_class
from events.catalogue.broker import ModelCredentialFailed, ModelRequestRefused, ModelUsageRecorded
from events.catalogue.queue import RunAbandoned
from events.catalogue.router import ChatNoticesOpened
from events.catalogue.chat import MessageReceived, OutboundMessageRequested
from events.catalogue.ext import (ExtCallFinished, ExtCallRefused, ExtCallStarted, ExtCapabilityGranted,
                                  ExtCapabilityOpened)
from events.catalogue.governance import GovProductRegistered, GovTaskCreated, GovTaskDispatched, GovTaskTransitioned
from events.catalogue.router import GroupRegistered
from events.catalogue.scheduler import TaskCreated, TaskRunRequested
from events.catalogue.system import MessageDeadLettered
from events.envelope import AggregateRef, RecordedCommit, decode_events
from events.errors import InvalidEvent
from events.repository import Repository
from events.store.jetstream import JetStreamEventStore
from events.store.streams import StreamSettings, ensure_streams
from events.subjects import DEAD_LETTER_STREAM, EVENT_STREAM
from services.broker.ext import EXT_CALL_SUBJECT
from services.broker.ext.calls import ExtCall
from services.broker.service import build as build_broker
from services.cli.cmd_groups import register_group
from services.governance import ipc as governance_ipc
from services.governance.dispatch import run_aggregate_id
from services.governance.service import build as build_governance
from services.harness.config import Credentials, HarnessSettings, NatsSettings, Settings
from services.harness.host import Builder, Host
from services.harness.natscallout import CalloutIssuer, sandbox_identities
from services.harness.run_token import mint
from services.router.service import build as build_router
from services.harness.emit import append_emit
from services.harness.service import Emit
from services.router import ipc as router_ipc
from services.router.groups import RegisteredGroup
from services.scheduler import ipc as scheduler_ipc
from services.scheduler.service import build as build_scheduler
from tests.broker.ext_stub import ExtStub
from tests.broker.ext_support import GH_TOKEN, MASTER, RUN_KEY, grant
from tests.bus import ask_subject
from tests.clock import FakeClock
from tests.deploy.natsdeploy import DeployedNats
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually

REPO = Path(__file__).resolve().parents[2]

SHORT = 2.0  # s: how long a publish waits for an ack that a denied publish never gets


@pytest.fixture
async def server(tmp_path):
    deployed = DeployedNats(tmp_path / "nats").start()
    admin = await deployed.connect("admin")
    await ensure_streams(admin.jetstream(), StreamSettings())
    await admin.close()
    yield deployed
    deployed.stop()


async def _stored(server: DeployedNats) -> int:
    admin = await server.connect("admin")
    try:
        return (await admin.jetstream().stream_info(EVENT_STREAM)).state.messages
    finally:
        await admin.close()


def test_every_emit_pattern_names_catalogued_contexts():
    known = {(payload_class(t).context, payload_class(t).aggregate, t) for t in all_event_types()}
    contexts = {c for c, _, _ in known}
    for name, access in SERVICE_ACCESS.items():
        for pattern in access.emits:
            _, _, context, *rest = pattern.split(".")
            if context in contexts and rest[-1] not in (">", "*"):
                assert (context, rest[0], rest[-1]) in known, (name, pattern)


async def test_a_service_appends_its_own_events_and_nothing_else(server):
    router = await server.connect("router")
    js = router.jetstream(timeout=SHORT)
    ack = await js.publish("nc.evt.router.conversation.c1.AgentTurnRequested", b"{}")
    assert ack.stream == EVENT_STREAM
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish("nc.evt.chat.message.m1.MessageReceived", b"{}")  # the gateway's event
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish("nc.evt.chat.outbound.o1.MessageSent", b"{}")  # the gateway's part of a shared aggregate
    await router.close()
    assert await _stored(server) == 1


async def test_only_the_admin_may_purge_delete_or_update_streams(server):
    queue = await server.connect("queue")
    jsm = queue.jetstream(timeout=SHORT)
    for attempt in (jsm.purge_stream(EVENT_STREAM), jsm.delete_stream(EVENT_STREAM),
                    jsm.add_stream(name="NC_OTHER", subjects=["other.>"])):
        with pytest.raises((nats.errors.TimeoutError, APIError)):
            await attempt
    await queue.close()
    admin = await server.connect("admin")
    info = await admin.jetstream().add_stream(name="NC_ADMIN_ONLY", subjects=["adm.>"])
    assert info.config.name == "NC_ADMIN_ONLY"
    await admin.jetstream().delete_stream("NC_ADMIN_ONLY")
    await admin.close()
    assert await _stored(server) == 0


async def test_a_service_cannot_subscribe_outside_its_inbox_and_requests(server):
    errors: list[str] = []
    queue = await server.connect("queue", errors)
    await queue.subscribe("nc.evt.>")
    await queue.subscribe("_INBOX_router.>")  # another service's replies
    await eventually(lambda: len([e for e in errors if "permissions violation for subscription" in e.lower()]) >= 2,
                     detail=errors)
    await queue.close()


async def test_the_reader_reads_but_cannot_publish(server):
    router = await server.connect("router")
    await router.jetstream().publish("nc.evt.router.group.g1.GroupRegistered", b"{}")
    await router.close()
    errors: list[str] = []
    reader = await server.connect("reader", errors)
    js = reader.jetstream(timeout=SHORT)
    msg = await js.get_last_msg(EVENT_STREAM, "nc.evt.router.group.g1.GroupRegistered", direct=True)
    assert msg.data == b"{}"
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish("nc.evt.router.group.g2.GroupRegistered", b"{}")
    await reader.publish("nc.ipc.main.send_message", b"{}")
    await eventually(lambda: any("permissions violation for publish" in e.lower() for e in errors), detail=errors)
    with pytest.raises((nats.errors.TimeoutError, APIError)):
        await js.purge_stream(EVENT_STREAM)
    await reader.close()
    assert await _stored(server) == 1


async def test_the_reader_acks_its_own_durable_but_cannot_touch_a_services(server):
    router = await server.connect("router")
    rjs = router.jetstream(timeout=SHORT)
    await rjs.publish("nc.evt.router.group.g1.GroupRegistered", b"{}")
    await rjs.add_consumer(EVENT_STREAM, api.ConsumerConfig(durable_name="svc_router", ack_policy=api.AckPolicy.EXPLICIT))
    await router.close()
    reader = await server.connect("reader")
    js = reader.jetstream(timeout=SHORT)
    # An outside tool's own durable pull consumer: fetch and ack.
    mine = await js.pull_subscribe("nc.evt.>", durable="audit_tool", stream=EVENT_STREAM)
    [msg] = await mine.fetch(1, timeout=SHORT)
    await msg.ack_sync(timeout=SHORT)
    assert (await js.consumer_info(EVENT_STREAM, "audit_tool")).num_ack_pending == 0
    # A service's durable: no pulling its messages (unacked, they would be redelivered into its dead letters),
    # no re-creating or re-filtering it.
    with pytest.raises((nats.errors.TimeoutError, APIError)):
        theirs = await js.pull_subscribe_bind("svc_router", stream=EVENT_STREAM)
        await theirs.fetch(1, timeout=SHORT)
    with pytest.raises((nats.errors.TimeoutError, APIError)):
        await js.add_consumer(EVENT_STREAM, api.ConsumerConfig(durable_name="svc_router", filter_subject="nc.evt.x.>",
                                                               ack_policy=api.AckPolicy.EXPLICIT))
    await reader.close()
    admin = await server.connect("admin")
    info = await admin.jetstream(timeout=SHORT).consumer_info(EVENT_STREAM, "svc_router")
    await admin.close()
    assert info.delivered.stream_seq == 0 and info.config.filter_subject in (None, "")


def _issuer(server: DeployedNats) -> CalloutIssuer:
    creds = server.credentials("sandbox-auth")
    creds.nats.sandbox_issuer_seed = type(creds.nats.nkey_seed)(server.ids.issuer_seed)
    creds.nats.callout_seed = creds.nats.nkey_seed
    issuer = sandbox_identities([server.url], NatsSettings(), creds)
    assert issuer is not None
    return issuer


async def _sandbox(server: DeployedNats, identity, errors: list[str]):
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(server.url, user=identity.user, password=identity.password,
                              inbox_prefix=identity.inbox_prefix, error_cb=on_error, allow_reconnect=False)


async def test_a_sandbox_reaches_its_own_group_and_nothing_else(server):
    issuer = _issuer(server)
    alpha = await issuer.issue("run-1", "alpha")
    beta = await issuer.issue("run-2", "beta")
    router = await server.connect("router")
    seen: list[str] = []

    async def tool(msg):
        seen.append(msg.subject)
        await msg.respond(json.dumps({"ok": True}).encode())

    await router.subscribe("nc.ipc.*.send_message", cb=tool)
    await router.flush()
    errors: list[str] = []
    sandbox = await _sandbox(server, alpha, errors)
    # Its own group's tool: crosses from the SANDBOX account to the services and back.
    reply = await sandbox.request(f"{alpha.ipc_prefix}.send_message", b"{}", timeout=5)
    assert json.loads(reply.data) == {"ok": True}
    # Another group's tool and another group's input: refused by the server.
    await sandbox.publish(f"{beta.ipc_prefix}.send_message", b"{}")
    await sandbox.subscribe(beta.input_subject)
    await sandbox.subscribe("nc.run.>")
    await sandbox.subscribe("nc.evt.>")
    await eventually(lambda: len([e for e in errors if "permissions violation" in e.lower()]) >= 4, detail=errors)
    assert seen == ["nc.ipc.alpha.send_message"]
    # The runner's follow-up reaches the run (services → SANDBOX account) and is answered.
    async def take_input(msg):
        await msg.respond(b'{"ok":true}')

    await sandbox.subscribe(alpha.input_subject, cb=take_input)
    await sandbox.flush()
    runner = await server.connect("runner")
    answer = await runner.request(alpha.input_subject, b'{"type":"message","text":"hi"}', timeout=5)
    assert answer.data == b'{"ok":true}'
    await sandbox.close()
    await runner.close()
    await router.close()
    await issuer.close()


async def test_a_revoked_or_unknown_sandbox_user_is_refused(server):
    issuer = _issuer(server)
    identity = await issuer.issue("run-3", "alpha")
    wrong = type(identity)(identity.user, "not-the-password", identity.inbox_prefix, identity.input_subject,
                           identity.ipc_prefix)
    with pytest.raises(Exception):
        await _sandbox(server, wrong, [])
    await issuer.revoke("run-3")
    with pytest.raises(Exception):
        await _sandbox(server, identity, [])
    await issuer.close()


async def test_services_run_under_their_generated_identities(server, tmp_path):
    from services.cli.registry import builders

    available = builders()
    hosts = []
    try:
        for name in ("router", "queue", "scheduler", "governance", "projections"):
            settings = Settings(data_dir=tmp_path / "data", nats=NatsSettings(urls=[server.url]))
            host = Host(settings, server.credentials(name), {name: available[name]}, [server.url])
            await host.start()
            hosts.append(host)
        await eventually(lambda: all(all(c["ready"] for c in h.checks().values()) for h in hosts), 30)
    finally:
        for host in hosts:
            await host.stop()
    assert _violations(server) == []  # e.g. a tool subscription the server refused: silent to the service


def test_init_writes_secrets_0600_and_keeps_keys(tmp_path):
    def init(*extra: str) -> None:
        subprocess.run([sys.executable, "-m", "services.cli.main", "init", "--dir", str(tmp_path / "d"), *extra],
                       cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True,
                       capture_output=True, timeout=120)

    init()
    first = Identities.load(tmp_path / "d" / "identities.json")
    init()
    assert Identities.load(tmp_path / "d" / "identities.json").seeds == first.seeds
    secrets = [tmp_path / "d" / "identities.json", *(tmp_path / "d" / "env").glob("*.env"),
               tmp_path / "d" / "admin.credentials.yml"]
    assert len(secrets) > 10
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    accounts = (tmp_path / "d" / "nats" / "accounts.conf").read_text()
    assert all(seed not in accounts for seed in first.seeds.values())
    env = dict(line.split("=", 1) for line in (tmp_path / "d" / "env" / "router.env").read_text().split())
    assert env["NANOCLAW_CRED_NATS__NKEY_SEED"] == first.seeds["router"]
    assert permissions_for("router")["subscribe"]["allow"][0] == env["NANOCLAW_CRED_NATS__INBOX_PREFIX"] + ".>"


# --- services that answer agent tools or share a context, for real under their identities -------------------

FAST = HarnessSettings(max_deliver=2, retry_delays_s=[0.05], ack_wait_s=5)
MAIN, DEV = "main", "dev-team"
JIDS = {MAIN: "main@g.us", DEV: "dev@g.us"}


def _subject(payload: type, aggregate_id: str) -> str:
    """A commit's subject as the code builds it: ``nc.evt.<context>.<aggregate>.<id>.<first event type>``."""
    return AggregateRef.for_payload(payload, aggregate_id).subject(payload.__name__)


@contextlib.asynccontextmanager
async def _admin_store(server: DeployedNats) -> AsyncIterator[JetStreamEventStore]:
    """The operator's view of the log (what `nanoclaw groups add` / `ext grant` write with)."""
    admin = await server.connect("admin")
    try:
        yield JetStreamEventStore(admin)
    finally:
        await admin.close()


def _violations(server: DeployedNats) -> list[str]:
    """What the server logged as denied (``Publish Violation``, ``Subscription Violation``): a denied publish
    is otherwise only a timeout, and a denied subscription is silent to the service."""
    return [line for line in (server.root / "server.log").read_text().splitlines() if "Violation" in line]


@contextlib.asynccontextmanager
async def _hosted(server: DeployedNats, tmp_path, name: str, build: Builder, credentials: Credentials | None = None,
                  **settings) -> AsyncIterator[Host]:
    """``nanoclaw service <name>`` as in its container: the real builder, connected as ``env/<name>.env`` says.
    When the block ends normally, the server must have denied nothing."""
    s = Settings(data_dir=tmp_path / name, timezone="UTC", nats=NatsSettings(urls=[server.url]), harness=FAST,
                 **settings)
    host = Host(s, credentials or server.credentials(name), {name: build}, [server.url])
    await host.start()
    try:
        yield host
    finally:
        await host.stop()
    assert _violations(server) == []


async def _register(store: JetStreamEventStore, *folders: str) -> None:
    for folder in folders:
        await register_group(store, jid=JIDS[folder], name=folder, folder=folder, trigger="@Andy",
                             requires_trigger=False, is_main=folder == MAIN)


async def _tool(sandbox, identity, tool: str, **args) -> dict:
    """One agent tool call as the sandbox makes it: a request on ``nc.ipc.<its folder>.<tool>``."""
    return await ask_subject(sandbox, f"{identity.ipc_prefix}.{tool}", args, timeout=15)


async def _done(sandbox, identity, tool: str, **args):
    reply = await _tool(sandbox, identity, tool, **args)
    assert reply["ok"] is True, reply
    return reply["result"]


async def _commits_by(store: JetStreamEventStore, source: str) -> list[RecordedCommit]:
    """The commits ``source`` stored, in stream order (a message that is no commit at all is skipped)."""
    commits = []
    async for raw in store.read_raw():
        try:
            commits.append(RecordedCommit(raw.seq, raw.subject, decode_events(raw.data), raw.stored_at))
        except InvalidEvent:
            continue
    return [c for c in commits if c.events[0].source == f"nanoclaw-bus/{source}"]


async def _subjects_by(store: JetStreamEventStore, source: str) -> list[str]:
    return [c.subject for c in await _commits_by(store, source)]


async def _appended(store: JetStreamEventStore, source: str, payload: type) -> bool:
    """For :func:`eventually`: ``source`` has stored a commit that starts with a ``payload`` event."""
    return any(s.endswith(f".{payload.__name__}") for s in await _subjects_by(store, source))


def test_every_agent_tool_is_answered_by_the_identity_of_the_service_the_sandbox_asks():
    from sandbox.agent.tools import TOOLS

    for tool, (service, _, _) in TOOLS.items():
        permissions = permissions_for(service)
        assert f"nc.ipc.*.{tool}" in permissions["subscribe"]["allow"], (tool, service)
        assert permissions["allow_responses"] is True, service


def test_each_service_may_answer_exactly_the_request_subjects_its_code_serves():
    served = {"router": set(router_ipc.REQUESTS), "scheduler": set(scheduler_ipc.REQUESTS),
              "governance": set(governance_ipc.REQUESTS), "broker": {EXT_CALL_SUBJECT}}
    for name, access in SERVICE_ACCESS.items():
        assert set(access.answers) == served.get(name, set()), name
        assert permissions_for(name)["allow_responses"] is bool(served.get(name)), name


async def test_governance_answers_a_sandboxs_tools_and_dispatches_the_task_run_on_the_scheduler_subject(
        server, tmp_path):
    issuer = _issuer(server)
    main = await issuer.issue("run-gov", MAIN)
    sandbox = await _sandbox(server, main, [])
    async with _admin_store(server) as store:
        await _register(store, MAIN, DEV)
        roles = {DEV: ["developer"]}  # the main group holds `main` by being the registered main group
        async with _hosted(server, tmp_path, "governance", build_governance, governance={"roles": roles}):
            product = await _done(sandbox, main, "gov_product_save", product_id="shop", name="Shop")
            task = await _done(sandbox, main, "gov_create_task", title="Rotate the keys", product_id="shop",
                               assignee=DEV)
            for to in ("TRIAGED", "READY"):
                task = await _done(sandbox, main, "gov_transition", task_id=task["task_id"], to=to,
                                   expected_version=task["version"])
            # The dispatch loop (its durable consumer) moves the task to DOING and requests the run.
            await eventually(lambda: _appended(store, "governance", TaskRunRequested), timeout=20)
            listed = await _done(sandbox, main, "gov_list", mine=False)
        subjects = await _subjects_by(store, "governance")
        [dispatch] = [e.payload() for c in await _commits_by(store, "governance") for e in c.events
                      if e.eventtype == GovTaskDispatched.__name__]
    await sandbox.close()
    await issuer.close()
    assert product["product_id"] == "shop" and [t["state"] for t in listed["tasks"]] == ["DOING"]
    task_id = task["task_id"]
    assert dispatch.group_folder == DEV
    assert subjects == [_subject(GovProductRegistered, "shop"), _subject(GovTaskCreated, task_id),
                        *[_subject(GovTaskTransitioned, task_id)] * 3,  # TRIAGED, READY; DOING + GovTaskDispatched
                        _subject(TaskRunRequested, run_aggregate_id(dispatch.dispatch_key))]


async def test_a_service_dead_letters_a_poison_message_under_its_own_name_only(server, tmp_path):
    admin = await server.connect("admin")
    store = JetStreamEventStore(admin)
    async with _hosted(server, tmp_path, "governance", build_governance):
        # Unparseable, on a subject the governance consumer takes: dead-lettered on its first delivery.
        await admin.jetstream().publish(_subject(GovTaskTransitioned, "gt-poison"), b"not json")
        await eventually(lambda: _appended(store, "governance", MessageDeadLettered), timeout=20)
    [notice] = await _commits_by(store, "governance")
    dlq = await admin.jetstream().stream_info(DEAD_LETTER_STREAM)
    await admin.close()
    assert notice.subject == _subject(MessageDeadLettered, "governance") and dlq.state.messages == 1
    governance = await server.connect("governance")
    with pytest.raises(nats.errors.TimeoutError):  # another service's dead-letter notice
        await governance.jetstream(timeout=SHORT).publish(_subject(MessageDeadLettered, "router"), b"{}")
    await governance.close()


# Subjects each service must not publish on: other services' events (the first event type names the writer
# of a shared aggregate), the operator's capability grants, and dead-letter notices under another name.
FOREIGN = {
    "governance": [_subject(TaskCreated, "t1"), _subject(OutboundMessageRequested, "o1"),
                   _subject(GroupRegistered, "whatsapp_main"), _subject(ExtCapabilityGranted, "alpha:github"),
                   _subject(MessageDeadLettered, "scheduler")],
    "broker": [_subject(ExtCapabilityGranted, "alpha:github"), _subject(TaskRunRequested, "gov:x"),
               _subject(GovTaskCreated, "gt-1"), _subject(MessageReceived, "m1"),
               _subject(MessageDeadLettered, "router")],
    "scheduler": [_subject(GovTaskCreated, "gt-1"), _subject(MessageReceived, "m1"),
                  _subject(ExtCallStarted, "alpha:k1"), _subject(MessageDeadLettered, "queue")],
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
async def test_a_service_cannot_append_another_services_events_answer_its_tools_or_purge(server, name):
    errors: list[str] = []
    nc = await server.connect(name, errors)
    js = nc.jetstream(timeout=SHORT)
    # All at once: each denied publish waits SHORT for an ack that never comes.
    denied = await asyncio.gather(*(js.publish(subject, b"{}") for subject in FOREIGN[name]),
                                  js.purge_stream(EVENT_STREAM), js.delete_msg(EVENT_STREAM, 1), return_exceptions=True)
    assert all(isinstance(outcome, (nats.errors.TimeoutError, APIError)) for outcome in denied), denied
    await nc.subscribe("nc.ipc.*.send_message")  # the router's tool
    await eventually(lambda: any("permissions violation for subscription" in e.lower() for e in errors), detail=errors)
    await nc.close()
    assert await _stored(server) == 0


async def test_the_broker_answers_a_sandboxs_ext_call_and_records_the_call_and_the_refusal(server, tmp_path):
    issuer = _issuer(server)
    alpha = await issuer.issue("run-ext", "alpha")
    sandbox = await _sandbox(server, alpha, [])
    async with _admin_store(server) as store, ExtStub() as stub:
        await grant(store, "alpha", "github", 1)  # what `nanoclaw ext grant` writes as the admin
        creds = Credentials(nats=server.credentials("broker").nats, run_token_key=RUN_KEY,
                            ext={"master_key": MASTER, "tokens": {"github": GH_TOKEN}})
        broker = {"model_proxy": {"host": "127.0.0.1", "port": 0, "upstream_url": "http://127.0.0.1:9"},
                  "ext": {"providers": {"github": {"kind": "github", "base_url": stub.url}}}}
        async with _hosted(server, tmp_path, "broker", build_broker, creds, broker=broker):
            read = await _done(sandbox, alpha, "ext_call", provider="github", idempotency_key="k1", method="GET",
                               path="/repos/octo/shop/issues")
            write = await _tool(sandbox, alpha, "ext_call", provider="github", idempotency_key="k2", method="POST",
                                path="/repos/octo/shop/issues", body={"title": "x"})
        subjects = await _subjects_by(store, "broker")
    await sandbox.close()
    await issuer.close()
    assert (read["status"], read["replayed"]) == (200, False) and len(stub.requests) == 1
    assert write["ok"] is False and write["error"].startswith("refused (")
    call = ExtCall.create_id("alpha", "k1")
    assert subjects == [_subject(ExtCallStarted, call), _subject(ExtCallFinished, call),
                        _subject(ExtCallRefused, "alpha")]


async def test_the_broker_records_model_usage_budget_refusals_and_credential_failures_under_its_identity(
        server, tmp_path):
    creds = Credentials(nats=server.credentials("broker").nats, run_token_key=RUN_KEY,
                        anthropic_api_key="sk-ant-REAL-KEY-never-in-a-sandbox")
    with StubAnthropic(steps=[("text", "hi"), ("error", 401, "authentication_error", "invalid x-api-key")]) as upstream:
        broker = {"model_proxy": {"host": "127.0.0.1", "port": 0, "upstream_url": upstream.url,
                                  "budgets_usd": {"capped": 0}}}
        async with _hosted(server, tmp_path, "broker", build_broker, creds, broker=broker) as host:
            proxy = host.runners[0].service.deps
            await eventually(lambda: proxy.port is not None)
            statuses = []
            for run_id, folder in (("run-1", "alpha"), ("run-2", "capped"), ("run-3", "alpha")):
                token = mint(RUN_KEY.encode(), run_id, folder, time.time() + 600)
                async with aiohttp.ClientSession() as http:
                    async with http.post(f"http://127.0.0.1:{proxy.port}/v1/messages",
                                         json={"model": "claude-opus-5-5", "max_tokens": 8, "stream": True,
                                               "messages": [{"role": "user", "content": "hi"}]},
                                         headers={"x-api-key": token, "anthropic-version": "2023-06-01"}) as r:
                        await r.read()
                        statuses.append(r.status)
        async with _admin_store(server) as store:
            subjects = await _subjects_by(store, "broker")
    assert statuses == [200, 402, 403]
    assert subjects == [_subject(ModelUsageRecorded, "alpha"), _subject(ModelRequestRefused, "capped"),
                        _subject(ModelUsageRecorded, "alpha"), _subject(ModelCredentialFailed, "run-3")]


async def test_the_router_tells_a_chat_about_a_failure_under_its_identity(server, tmp_path):
    async with _admin_store(server) as store:
        await _register(store, DEV)
        abandoned = RunAbandoned(chat_jid=JIDS[DEV], group_folder=DEV, run_id="r1", attempts=6, reason="failed")
        await append_emit(store, Emit.append("default", abandoned), source="queue", msg_id="abandoned-r1")
        async with _hosted(server, tmp_path, "router", build_router):
            await eventually(lambda: _appended(store, "router", OutboundMessageRequested), 30)
        subjects = await _subjects_by(store, "router")
    assert _subject(ChatNoticesOpened, JIDS[DEV]) in subjects


async def test_the_scheduler_answers_a_sandbox_and_reports_a_paused_task_to_the_chat_under_its_identity(
        server, tmp_path):
    clock = FakeClock()
    issuer = _issuer(server)
    dev = await issuer.issue("run-sched", DEV)
    sandbox = await _sandbox(server, dev, [])
    async with _admin_store(server) as store:
        await _register(store, MAIN, DEV)
        build: Builder = lambda ctx: build_scheduler(ctx, clock=clock)  # noqa: E731
        async with _hosted(server, tmp_path, "scheduler", build, scheduler={"report_errors": True}) as host:
            answer = await _done(sandbox, dev, "schedule_task", prompt="p", schedule_type="interval",
                                 schedule_value="60000")
            repo = Repository(store, "cli")
            group = await repo.get(RegisteredGroup, JIDS[DEV])
            group.remove()
            await repo.save(group)
            await host.runners[0].service.readmodel.wait_for(await store.last_seq())
            clock.advance(60)
            await eventually(lambda: _appended(store, "scheduler", OutboundMessageRequested), timeout=20)
        [notice] = [c for c in await _commits_by(store, "scheduler") if c.events[0].aggregatetype == "outbound"]
    await sandbox.close()
    await issuer.close()
    task_id = answer.split()[1]
    assert notice.subject == _subject(OutboundMessageRequested, notice.events[0].aggregateid)
    assert notice.events[0].data["chat_jid"] == JIDS[DEV] and task_id in notice.events[0].data["text"]


async def test_a_service_cannot_create_or_change_another_services_durable_consumer(server):
    queue = await server.connect("queue")
    js = queue.jetstream(timeout=SHORT)

    def durable(name: str, *filters: str) -> api.ConsumerConfig:
        return api.ConsumerConfig(name=name, durable_name=name, filter_subjects=list(filters),
                                  ack_policy=api.AckPolicy.EXPLICIT)

    denied = await asyncio.gather(*(js.add_consumer(EVENT_STREAM, config) for config in (
        durable("svc_router", "nc.evt.queue.>", "nc.evt.router.>"),  # another's durable, re-filtered
        durable("svc_router", "nc.evt.queue.>"),  # the same with one filter (the filter is in the API subject)
        durable("anything", "nc.evt.>"))), return_exceptions=True)
    assert all(isinstance(outcome, (nats.errors.TimeoutError, APIError)) for outcome in denied), denied
    own = await js.add_consumer(EVENT_STREAM, durable("svc_queue", "nc.evt.queue.>", "nc.evt.router.>"))
    assert own.name == "svc_queue"
    await queue.close()


def _cli(server: DeployedNats, tmp_path, identity: str, *args: str) -> subprocess.CompletedProcess:
    """``nanoclaw … --credentials <identity>.credentials.yml`` from the host, as docs/deploy.md shows."""
    creds = tmp_path / f"{identity}.credentials.yml"
    creds.write_text(yaml.safe_dump({"nats": {"nkey_seed": server.ids.seeds[identity],
                                              "inbox_prefix": inbox_prefix(identity)}}))
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "NANOCLAW_NATS__URLS": json.dumps([server.url]),
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args, "--credentials", str(creds)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


async def test_the_operator_runs_gov_and_ext_commands_as_the_admin(server, tmp_path):
    for args in (["gov", "products", "add", "shop", "--name", "Shop"],
                 ["gov", "tasks", "create", "Harden checkout", "--product", "shop"],
                 ["ext", "grant", "alpha", "github", "--level", "1", "--approver", "alice"],
                 ["ext", "list"]):
        done = await asyncio.to_thread(_cli, server, tmp_path, "admin", *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "alpha" in done.stdout and "github" in done.stdout
    async with _admin_store(server) as store:
        subjects = await _subjects_by(store, "cli")
    assert [subjects[0], subjects[2]] == [_subject(GovProductRegistered, "shop"),
                                          _subject(ExtCapabilityOpened, "alpha:github")]
    assert len(subjects) == 3 and subjects[1].endswith(".GovTaskCreated")
