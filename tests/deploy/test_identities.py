"""The deployment's NATS identities against a real nats-server started from the generated configuration
(no Docker): least privilege per service, admin-only stream administration, a read-only reader, and per-run
sandbox users minted through the auth callout, confined to their own group."""

from __future__ import annotations

import json
import stat

import nats
import pytest
from nats.js.errors import APIError

from deploy.identities import SERVICE_ACCESS, Identities, permissions_for
from events.catalogue import all_event_types, payload_class
from events.store.streams import StreamSettings, ensure_streams
from events.subjects import EVENT_STREAM
from services.harness.config import NatsSettings, Settings
from services.harness.host import Host
from services.harness.natscallout import CalloutIssuer, sandbox_identities
from tests.deploy.natsdeploy import DeployedNats, wait_for

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
    assert await wait_for(lambda: len([e for e in errors if "permissions violation for subscription" in e.lower()]) >= 2)
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
    assert await wait_for(lambda: any("permissions violation for publish" in e.lower() for e in errors))
    with pytest.raises((nats.errors.TimeoutError, APIError)):
        await js.purge_stream(EVENT_STREAM)
    await reader.close()
    assert await _stored(server) == 1


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
    assert await wait_for(lambda: len([e for e in errors if "permissions violation" in e.lower()]) >= 4), errors
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
    for attempt in (wrong,):
        with pytest.raises(Exception):
            await _sandbox(server, attempt, [])
    await issuer.revoke("run-3")
    with pytest.raises(Exception):
        await _sandbox(server, identity, [])
    await issuer.close()


async def test_services_run_under_their_generated_identities(server, tmp_path):
    from services.cli.registry import builders

    available = builders()
    hosts = []
    try:
        for name in ("router", "queue", "projections"):
            settings = Settings(data_dir=tmp_path / "data", nats=NatsSettings(urls=[server.url]))
            host = Host(settings, server.credentials(name), {name: available[name]}, [server.url])
            await host.start()
            hosts.append(host)
        assert await wait_for(lambda: all(all(c["ready"] for c in h.checks().values()) for h in hosts), 30)
    finally:
        for host in hosts:
            await host.stop()


def test_init_writes_secrets_0600_and_keeps_keys(tmp_path):
    import subprocess
    import sys

    REPO = __import__('pathlib').Path(__file__).resolve().parents[2]

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
        assert all(seed not in (tmp_path / "d" / "nats" / "accounts.conf").read_text() for seed in first.seeds.values())
    env = dict(line.split("=", 1) for line in (tmp_path / "d" / "env" / "router.env").read_text().split())
    assert env["NANOCLAW_CRED_NATS__NKEY_SEED"] == first.seeds["router"]
    assert permissions_for("router")["subscribe"]["allow"][0] == env["NANOCLAW_CRED_NATS__INBOX_PREFIX"] + ".>"
