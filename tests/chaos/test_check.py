"""The checker counts what it claims to: each column fires on exactly the fault it names (pure data, no bus)."""

from __future__ import annotations

from tests.chaos.check import LogView, Outbound, check
from tests.system.traffic import Accepted, Ledger

T0 = 1_000_000.0


def ledger(*tokens: str) -> Ledger:
    return Ledger([Accepted(t, t.split("-")[0], i, T0 + i) for i, t in enumerate(tokens)])


def log(*outbound: tuple[str, str, float | None]) -> LogView:
    return LogView(outbound={f"o{i}": Outbound(chat, text, at) for i, (chat, text, at) in enumerate(outbound)})


def test_a_clean_run_has_zero_in_every_column():
    r = check(ledger("g00-00000", "g00-00001"), [["g00-00000"], ["g00-00001"]],
              log(("g00", "re g00-00000", T0 + 1), ("g00", "re g00-00001", T0 + 2)), agent_time_s={})
    assert r.clean and r.accepted == 2


def test_a_message_with_no_reply_and_no_notice_is_lost_and_a_notice_covers_earlier_messages():
    r = check(ledger("g00-00000", "g00-00001"), [["g00-00000"]], log(("g00", "re g00-00000", T0 + 1)),
              agent_time_s={})
    assert (r.lost, r.never_to_model, r.examples["lost"]) == (1, 1, ["g00-00001"])
    r = check(ledger("g00-00000", "g00-00001"), [["g00-00000"]],
              log(("g00", "re g00-00000", T0 + 1), ("g00", "Sorry, that failed.", T0 + 3)), agent_time_s={})
    assert r.lost == 0 and r.notices == 1


def test_a_reply_requested_but_never_sent_does_not_count():
    r = check(ledger("g00-00000"), [["g00-00000"]], log(("g00", "re g00-00000", None)), agent_time_s={})
    assert r.lost == 1


def test_twice_to_the_model_and_twice_replied_are_counted():
    r = check(ledger("g00-00000"), [["g00-00000"], ["g00-00000"]],
              log(("g00", "re g00-00000", T0 + 1), ("g00", "re g00-00000", T0 + 2)), agent_time_s={})
    assert (r.duplicated_to_model, r.duplicate_replies) == (1, 1)


def test_a_later_message_reaching_the_model_first_is_reordered():
    r = check(ledger("g00-00000", "g00-00001", "g00-00002"), [["g00-00001"], ["g00-00000", "g00-00002"]],
              log(("g00", "re g00-00001", T0 + 3), ("g00", "re g00-00000 g00-00002", T0 + 4)), agent_time_s={})
    assert (r.reordered, r.examples["reordered"]) == (1, ["g00-00001"])


def test_an_answer_later_than_the_threshold_plus_agent_time_is_stuck():
    msgs = ledger("g00-00000")
    late = log(("g00", "re g00-00000", T0 + 14))
    assert check(msgs, [["g00-00000"]], late, agent_time_s={"g00": 3.0}).stuck == 1
    assert check(msgs, [["g00-00000"]], late, agent_time_s={"g00": 5.0}).stuck == 0


def test_a_wait_overlapping_a_fault_may_take_the_fault_and_its_recovery_longer():
    msgs = ledger("g00-00000")
    late = log(("g00", "re g00-00000", T0 + 20))
    assert check(msgs, [["g00-00000"]], late, agent_time_s={"g00": 1.0}).stuck == 1
    during = [(T0 + 2, T0 + 3)]
    assert check(msgs, [["g00-00000"]], late, agent_time_s={"g00": 1.0}, faults=during, recovery_s=10).stuck == 0
    before = [(T0 - 30, T0 - 29)]
    assert check(msgs, [["g00-00000"]], late, agent_time_s={"g00": 1.0}, faults=before, recovery_s=10).stuck == 1
