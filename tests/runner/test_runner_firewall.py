"""The sandbox firewall's iptables commands (the live effect is checked in tests/test_agent_sandbox_e2e.py)."""

from __future__ import annotations

from services.runner.firewall import chain_name, confine, rules
from services.runner.sandbox.base import CommandResult
from tests.runner.conftest import FakeExecutor


def test_the_chain_accepts_only_the_relay_ports_then_drops_everything():
    got = rules("ncsbx-abc123", [4222, 8788, 4222])
    assert got[-1] == ["-A", "NC-ncsbx-abc123", "-j", "DROP"]
    assert [r[5] for r in got if "--dport" in r] == ["4222", "8788"]


async def test_the_input_jump_is_added_once():
    executor = FakeExecutor({("iptables", "-w", "-C"): CommandResult(0, "", "")})
    assert await confine("ncsbx-abc123", [4222], executor, iptables="iptables")
    assert not any("-I" in call for call in executor.calls)
    fresh = FakeExecutor({("iptables", "-w", "-C"): CommandResult(1, "", "no rule")})
    assert await confine("ncsbx-abc123", [4222], fresh, iptables="iptables")
    assert fresh.calls[-1] == ["iptables", "-w", "-I", "INPUT", "-i", "ncsbx-abc123", "-j", chain_name("ncsbx-abc123")]


async def test_a_failing_rule_reports_false_so_the_gap_is_logged():
    executor = FakeExecutor({("iptables", "-w", "-A"): CommandResult(1, "", "denied")})
    assert not await confine("ncsbx-abc123", [4222], executor, iptables="iptables")
