"""Conversation integrity on the real services (issue 13): every service a process of its own on one real
nats-server, the process sandbox backend running the protocol-speaking agent (tests/system/fake_agent.py), the
stub model behind the broker's model proxy, webhook traffic.

Properties, for any mix of bursts over several chats (gaps 0-500 ms, up to 200 messages in one burst), agent
start latencies 0-3 s, agent runs failing at start, and SIGKILL + restart of the router, the queue or the runner:
- every accepted message reaches the model exactly once, in arrival order per chat;
- no turn waits on an idle timeout while input is pending (the runner's idle timeout, 60 s, is far above the
  10 s + agent time (+ one fault's recovery) after which an answer counts as stuck);
- every message ends in a reply or a failure notice in its chat.

Few examples (each starts the whole system), no shrinking (an example takes a minute), derandomized so CI runs
the same examples every time. The issue's reproduction is an explicit example: a regression test.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.chaos.faults import Fault, FaultPlan
from tests.chaos.scenario import Scenario, run
from tests.system.traffic import chat_name

RESTARTABLE = ("router", "queue", "runner")

bursts = st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(1, 6)), min_size=1, max_size=6)
big_burst = st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(1, 200)), min_size=1, max_size=2)
runs = st.lists(st.tuples(st.floats(0.0, 3.0), st.sampled_from([False, False, False, True])),
                min_size=1, max_size=12)
restarts = st.lists(st.tuples(st.floats(0.0, 8.0), st.sampled_from(RESTARTABLE), st.floats(0.2, 2.0)), max_size=3)


@st.composite
def scenarios(draw) -> Scenario:
    chats = [chat_name(i) for i in range(draw(st.integers(2, 4)))]
    plan = {chat: draw(big_burst if i == 0 else bursts) for i, chat in enumerate(chats)}
    agents = {}
    for chat in chats:
        drawn = draw(runs)
        fails = [f for _, f in drawn]
        # At most one failure in a row: the queue's retry back-off then stays within the agent-time allowance.
        fails = [f and not (i and fails[i - 1]) for i, f in enumerate(fails)]
        agents[chat] = {"latency_s": [round(l, 2) for l, _ in drawn], "fail": fails}
    faults = FaultPlan(sorted((Fault(at, target, down) for at, target, down in draw(restarts)), key=lambda f: f.at))
    return Scenario(plan, agents, faults, drain_s=45.0)


def the_issue_reproduction() -> Scenario:
    """Issue 13, "What goes wrong today": four messages 0.3-0.4 s apart into a no-trigger group with no live
    agent; the agent takes 2 s to start, so messages 2 and 3 arrive while it starts."""
    return Scenario({"g00": [(0.0, 1), (0.3, 1), (0.4, 1), (0.35, 1)]},
                    {"g00": {"latency_s": [2.0, 2.0, 2.0], "fail": [False, False, False]}}, drain_s=45.0)


def check_properties(scenario: Scenario) -> None:
    with tempfile.TemporaryDirectory(prefix="lifecycle-") as root:
        outcome = asyncio.run(run(scenario, Path(root), progress=lambda _: None))
    report = outcome.report
    assert report.accepted == sum(n for bursts in scenario.plan.values() for _, n in bursts), outcome.summary()
    assert outcome.crashed == {}, outcome.summary()
    assert (report.duplicated_to_model, report.reordered) == (0, 0), outcome.summary()
    assert report.stuck == 0, outcome.summary()
    assert report.lost == 0, outcome.summary()
    assert outcome.audit_ok, outcome.summary()


@pytest.mark.timeout(240)
def test_a_burst_into_a_starting_run_reaches_the_model_once_in_order_with_no_idle_wait():
    check_properties(the_issue_reproduction())


@pytest.mark.timeout(240)
def test_a_run_that_missed_input_across_a_nats_server_restart_ends_and_the_chat_is_answered():
    """Found by the fault campaign: right after a nats-server restart the idle run's agent has not resubscribed
    yet, the piped input comes back (NoRespondersError) and the run is asked to close; the run must end (or be
    ended) so the chat's next turns start, never block the chat with no failure notice."""
    check_properties(Scenario({"g00": [(0.0, 1)] + [(0.25, 1)] * 30},
                              {"g00": {"latency_s": [0.0] * 5, "fail": [False] * 5}},
                              FaultPlan([Fault(2.0, "nats-server", 1.0)]), drain_s=40.0))


@pytest.mark.timeout(900)
@settings(max_examples=3, deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), print_blob=True)
@given(scenarios())
@example(Scenario({"g00": [(0.0, 150)], "g01": [(0.2, 3), (0.5, 2)]},
                  {"g00": {"latency_s": [0.5, 1.0], "fail": [False, True]},
                   "g01": {"latency_s": [3.0], "fail": [False]}},
                  FaultPlan([Fault(1.5, "router", 0.5), Fault(3.0, "queue", 0.5), Fault(4.5, "runner", 1.0)]),
                  drain_s=45.0))
def test_bursts_slow_starts_failures_and_restarts_never_drop_double_reorder_or_strand_a_message(scenario):
    check_properties(scenario)
