"""The short fault campaign of issue 13 in CI: 300 webhook messages over 20 chats at 3 msg/s, agents taking
0-3 s to start, 10 SIGKILLs of random services and one nats-server restart (seed 13, so the plan is the same
on every run). Target: 0 in every column of the checker, and a clean `nanoclaw audit verify`."""

from __future__ import annotations

import pytest

from tests.chaos.campaign import scenario
from tests.chaos.scenario import run


@pytest.mark.timeout(300)
async def test_a_short_fault_campaign_loses_doubles_reorders_and_strands_no_message(tmp_path):
    outcome = await run(scenario(messages=300, groups=20, kills=10, rate=3.0, seed=13, drain_s=45.0), tmp_path,
                        progress=lambda _: None)
    assert outcome.report.accepted == 300, outcome.summary()
    assert len(outcome.fault_log) == 11, outcome.summary()
    assert outcome.crashed == {}, outcome.summary()
    assert outcome.report.clean, outcome.summary()
    assert outcome.audit_ok, outcome.summary()
