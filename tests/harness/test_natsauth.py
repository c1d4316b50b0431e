"""Per-run NATS identities on a real embedded server: the server, not our code, confines a run to its group."""

from __future__ import annotations


import nats
import pytest

from services.harness.natsembedded import EmbeddedAuth
from services.harness.natsserver import EmbeddedNats
from tests.support import eventually


@pytest.fixture
def server(tmp_path):
    auth = EmbeddedAuth(tmp_path / "auth.conf")
    s = EmbeddedNats(tmp_path / "nats", sync_always=False, auth=auth).start()
    yield s
    s.stop()


async def connect_as(server: EmbeddedNats, identity, errors: list | None = None):
    """Connect as a run at once: its user is minted by the auth callout, with no configuration reload to wait for."""
    async def on_error(exc):
        if errors is not None:
            errors.append(exc)
    return await nats.connect(server.url, user=identity.user, password=identity.password,
                              inbox_prefix=identity.inbox_prefix, allow_reconnect=False, error_cb=on_error)


async def test_anonymous_clients_are_refused_and_the_services_user_is_accepted(server):
    with pytest.raises(Exception):
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=1)
    nc = await nats.connect(server.admin_url)
    await nc.close()


async def test_a_run_may_request_its_own_groups_ipc_subjects_and_get_the_answer(server):
    services = await nats.connect(server.admin_url)
    async def answer(msg):
        await msg.respond(b'{"ok":true}')
    await services.subscribe("nc.ipc.family.>", cb=answer)
    identity = await server.auth.issue("run-1", "family")
    agent = await connect_as(server, identity)
    reply = await agent.request("nc.ipc.family.send_message", b"{}", timeout=5)
    assert reply.data == b'{"ok":true}'
    await agent.close()
    await services.close()


async def test_a_run_cannot_publish_to_another_groups_subjects_or_read_other_runs_input(server):
    services = await nats.connect(server.admin_url)
    seen: list[str] = []
    async def record(msg):
        seen.append(msg.subject)
    await services.subscribe("nc.ipc.other.>", cb=record)
    identity = await server.auth.issue("run-2", "family")
    errors: list[Exception] = []
    agent = await connect_as(server, identity, errors)
    await agent.publish("nc.ipc.other.send_message", b"{}")
    await agent.publish("nc.evt.router.group.x.GroupRegistered", b"{}")
    await agent.subscribe("nc.run.other.run-9.input")
    await agent.flush()
    await eventually(lambda: len(errors) >= 3)
    assert all("permissions violation" in str(e).lower() for e in errors)
    await services.flush()
    assert seen == []
    await agent.close()
    await services.close()


async def test_a_revoked_run_can_no_longer_connect(server):
    identity = await server.auth.issue("run-3", "family")
    agent = await connect_as(server, identity)
    await agent.close()
    await server.auth.revoke("run-3")

    async def refused() -> bool:
        try:
            nc = await nats.connect(server.url, user=identity.user, password=identity.password,
                                    allow_reconnect=False, max_reconnect_attempts=1)
        except Exception:  # noqa: BLE001
            return True
        await nc.close()
        return False
    await eventually(refused)


def test_the_auth_file_is_private_and_quotes_every_value(server):
    text = server.auth.path.read_text()
    assert oct(server.auth.path.stat().st_mode & 0o777) == "0o600"
    assert all(f'"password": "{pw}"' in text for pw in server.auth.passwords.values())


async def test_issuing_a_run_user_never_rewrites_or_reloads_the_servers_configuration(server):
    """A reload with accounts briefly takes JetStream away from the services (services/harness/natsembedded.py)."""
    before = server.auth.path.read_text()
    identity = await server.auth.issue("run-5", "family")
    await (await connect_as(server, identity)).close()
    await server.auth.revoke("run-5")
    assert server.auth.path.read_text() == before
    assert "run-5" not in before
