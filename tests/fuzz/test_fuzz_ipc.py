"""Fuzzing the agents' tools (real nats-server, the whole system as `nanoclaw up` runs it): requests drawn from
each tool's input schema (tests/fuzz/strategies.py), sent as a sandbox sends them, with a run identity of its
own from the server's auth callout, on every request subject a service answers. Each gets a clear answer (an
error naming the problem when the request is malformed); after each, the same service answers a good request;
every service stays up."""

from __future__ import annotations

import json

import nats
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.fuzz.strategies import bad_request, tool_schemas
from tests.fuzz.system import SharedSystem
from tests.router.test_router_service import register

EXAMPLES = 10
"""Requests per tool and run."""

FOLDER = "fuzz"
MALFORMED = {"garbage", "not_an_object", "deeply_nested", "missing_argument", "wrong_type"}
"""Kinds of request no tool can take as asked: the answer must be an error."""

GOOD = {"router": ("send_message", {"text": "fuzz barrier"}), "scheduler": ("list_tasks", {}),
        "governance": ("gov_list", {}), "broker": ("ext_call", {"capability": "fuzz", "operation": "get"})}
"""A well-formed request per service: answered ``ok`` (the broker: with its error for a capability that was
never granted)."""

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


class Sandbox:
    def __init__(self, shared: SharedSystem):
        self.shared = shared
        self.nc = None

    async def start(self) -> None:
        await register(self.shared.store, jid="http:fuzz", folder=FOLDER, requires_trigger=False)
        identity = await self.shared.server.auth.issue("fuzz-run", FOLDER)
        self.nc = await nats.connect(self.shared.server.url, user=identity.user, password=identity.password,
                                     inbox_prefix=identity.inbox_prefix, allow_reconnect=False)

    async def ask(self, tool: str, body: bytes) -> dict:
        msg = await self.nc.request(f"nc.ipc.{FOLDER}.{tool}", body, timeout=30)
        answer = json.loads(msg.data)
        assert isinstance(answer, dict) and type(answer.get("ok")) is bool, answer
        if not answer["ok"]:
            assert isinstance(answer.get("error"), str) and answer["error"].strip(), answer
        return answer

    async def stop(self) -> None:
        if self.nc is not None:
            await self.nc.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    # Every governance role, so governance tools reach their argument checks rather than stop at the role check.
    system = SharedSystem(tmp_path_factory.mktemp("fuzz-ipc"),
                          governance={"roles": {FOLDER: ["developer", "security", "reviewer"]}}).start()
    sandbox = Sandbox(system)
    system.run(sandbox.start())
    system.sandbox = sandbox
    yield system
    system.run(sandbox.stop())
    system.stop()


def answering() -> dict[str, str]:
    """Tool → the service that answers it (registry of the running system, see :func:`test_every_tool_is_fuzzed`)."""
    from sandbox.agent.tools import TOOLS
    return {name: service for name, (service, _d, _s) in TOOLS.items()}


def test_every_request_subject_of_the_system_is_a_fuzzed_tool(shared):
    served = {pattern.split(".")[-1]: r.service.name for r in shared.host.runners for pattern in r.service.requests}
    assert served == answering() and set(GOOD) == set(served.values())


@pytest.mark.parametrize("tool", sorted(answering()))
@FUZZ
@given(data=st.data())
def test_every_bad_tool_request_gets_a_clear_answer_and_the_service_answers_the_next_good_one(shared, tool, data):
    kind, body = data.draw(bad_request(tool_schemas()[tool]), label="request")
    answer = shared.run(shared.sandbox.ask(tool, body))
    if kind in MALFORMED:
        assert answer["ok"] is False, (kind, answer)
    if kind in ("garbage", "not_an_object", "deeply_nested"):
        assert "not a JSON object" in answer["error"], answer
    good_tool, good_args = GOOD[answering()[tool]]
    good = shared.run(shared.sandbox.ask(good_tool, json.dumps(good_args).encode()))
    assert good["ok"] or answering()[tool] == "broker", good
    unhealthy = [r.service.name for r in shared.host.runners if not r.healthy]
    assert not unhealthy, unhealthy
