"""Per-run NATS identities on a real embedded server: the server, not our code, confines a run to its group."""

from __future__ import annotations

import asyncio

import nats
import pytest

from services.harness.natsauth import EmbeddedAuth
from services.harness.natsserver import EmbeddedNats
from tests.support import eventually


@pytest.fixture
def server(tmp_path):
    auth = EmbeddedAuth(tmp_path / "auth.conf")
    s = EmbeddedNats(tmp_path / "nats", sync_always=False, auth=auth).start()
    yield s
    s.stop()


async def connect_as(server: EmbeddedNats, identity, errors: list | None = None):
    async def on_error(exc):
        if errors is not None:
            errors.append(exc)
    for _ in range(50):  # the reload that adds the user is asynchronous
        try:
            return await nats.connect(server.url, user=identity.user, password=identity.password,
                                      inbox_prefix=identity.inbox_prefix, allow_reconnect=False, error_cb=on_error)
        except Exception:  # noqa: BLE001 - authorization violation until the reload lands
            await asyncio.sleep(0.05)
    raise AssertionError("run user never accepted")


async def test_anonymous_clients_are_refused_and_the_services_user_is_accepted(server):
    with pytest.raises(Exception):
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=1)
    nc = await nats.connect(server.services_url)
    await nc.close()


async def test_a_run_may_request_its_own_groups_ipc_subjects_and_get_the_answer(server):
    services = await nats.connect(server.services_url)
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
    services = await nats.connect(server.services_url)
    seen: list[str] = []
    async def record(msg):
        seen.append(msg.subject)
    await services.subscribe("nc.ipc.other.>", cb=record)
    identity = await server.auth.issue("run-2", "family")
    errors: list[Exception] = []
    agent = await connect_as(server, identity, errors)
    errors.clear()  # attempts refused before the reload landed reported errors too
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
    assert f'"password": "{server.auth.services_password}"' in text
