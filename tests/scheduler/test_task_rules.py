"""The task aggregate's rules without the bus: claiming due times, catch-up after an outage, run results,
and the commands' validation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from events.aggregate import pending_payloads
from events.catalogue.queue import rerun_id, task_run_id
from services.harness.clock import parse_time
from services.scheduler import commands
from services.scheduler.queries import GroupRef
from services.scheduler.task import ScheduledTask, TaskError

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)  # a Monday
GROUP = GroupRef("team@g.us", "whatsapp_team", False)


def task(schedule_type="cron", value="0 * * * *", catch_up="once", **extra) -> ScheduledTask:
    t = commands.schedule({"prompt": "report", "schedule_type": schedule_type, "schedule_value": value,
                           "catch_up": catch_up, **extra}, group=GROUP, timezone="UTC", now=T0, by="cli")
    pending_payloads(t)
    return t


def claim(t: ScheduledTask, now: datetime, grace_s=60, max_runs=10):
    run_id = t.claim(now=now, grace_s=grace_s, max_catch_up_runs=max_runs, is_main=False)
    return run_id, {type(p).__name__: p for p in pending_payloads(t)}


def finish(t: ScheduledTask, run_id: str, now: datetime, status="success", interrupted=False, result="done") -> bool:
    ok = t.finish(run_id=task_run_id(run_id), status=status, interrupted=interrupted, run_at=now, duration_ms=1200,
                  result=result, error=None if status == "success" else "boom")
    pending_payloads(t)
    return ok


def test_a_new_task_defaults_to_group_context_and_once_catch_up():
    t = commands.schedule({"prompt": "p", "schedule_type": "interval", "schedule_value": "60000"}, group=GROUP,
                          timezone="Europe/Berlin", now=T0, by="whatsapp_team")
    assert (t.context_mode, t.catch_up, t.timezone, t.status) == ("group", "once", "Europe/Berlin", "active")
    assert t.id.startswith("task-") and parse_time(t.next_run) == T0 + timedelta(minutes=1)


@pytest.mark.parametrize("mode", ["group", "isolated"])
def test_a_valid_context_mode_is_kept(mode):
    assert task(context_mode=mode).context_mode == mode


@pytest.mark.parametrize("field,value", [("context_mode", "bogus"), ("catch_up", "sometimes"), ("prompt", " "),
                                         ("prompt", 5)])
def test_an_invalid_field_is_refused_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        task(**{field: value})


def test_a_task_is_not_claimed_before_it_is_due():
    t = task()
    with pytest.raises(TaskError, match="not due"):
        claim(t, T0 + timedelta(minutes=59))


def test_claiming_an_on_time_due_time_starts_one_run_and_advances_next_run():
    t = task()
    run_id, events = claim(t, T0 + timedelta(hours=1, seconds=3))
    assert set(events) == {"TaskRunStarted", "TaskRunRequested"}
    started = events["TaskRunStarted"]
    assert (started.due_at, started.covers, started.next_run) == ("2026-11-02T09:00:00.000Z", [], "2026-11-02T10:00:00.000Z")
    assert events["TaskRunRequested"].run_id == run_id and events["TaskRunRequested"].context_mode == "group"


def test_no_second_claim_while_a_run_is_in_flight():
    t = task()
    claim(t, T0 + timedelta(hours=1))
    assert not t.is_due(T0 + timedelta(hours=5))


def test_a_finished_run_records_the_result_and_frees_the_task():
    t = task()
    run_id, _ = claim(t, T0 + timedelta(hours=1))
    assert finish(t, run_id, T0 + timedelta(hours=1, minutes=1), result="x" * 300)
    assert t.in_flight is None and t.last_result == "x" * 200
    assert t.is_due(T0 + timedelta(hours=2))


def test_a_failed_run_records_the_error_as_last_result():
    t = task()
    run_id, _ = claim(t, T0 + timedelta(hours=1))
    finish(t, run_id, T0 + timedelta(hours=1), status="error")
    assert t.last_result == "Error: boom"


def test_an_interrupted_first_attempt_waits_for_the_queues_re_run():
    t = task()
    run_id, _ = claim(t, T0 + timedelta(hours=1))
    assert not t.finish(run_id=task_run_id(run_id), status="error", interrupted=True, run_at=T0, duration_ms=1,
                        result=None, error="interrupted")
    assert t.in_flight == run_id
    assert t.finish(run_id=rerun_id(task_run_id(run_id)), status="success", interrupted=False, run_at=T0,
                    duration_ms=1, result="ok", error=None)


def test_a_run_of_another_task_is_not_recorded():
    t = task()
    claim(t, T0 + timedelta(hours=1))
    assert not finish(t, "someone-else", T0)


def test_a_once_task_completes_after_its_run():
    t = task("once", "2026-11-02T09:30:00")
    run_id, events = claim(t, datetime(2026, 11, 2, 9, 30, 5, tzinfo=timezone.utc))
    assert events["TaskRunStarted"].next_run is None
    finish(t, run_id, T0)
    assert t.status == "completed"


OUTAGE = T0 + timedelta(days=3, minutes=30)  # 72 hourly due times passed while the scheduler was down


def test_catch_up_skip_records_every_missed_due_time_and_runs_nothing():
    t = task(catch_up="skip")
    run_id, events = claim(t, OUTAGE)
    assert run_id is None and set(events) == {"TaskRunsSkipped"}
    skipped = events["TaskRunsSkipped"]
    assert skipped.count == 72 and skipped.due_times[0] == "2026-11-02T09:00:00.000Z"
    assert skipped.next_run == "2026-11-05T09:00:00.000Z" == t.next_run


def test_catch_up_skip_still_runs_a_due_time_that_is_on_time():
    t = task(catch_up="skip")
    run_id, events = claim(t, T0 + timedelta(days=3, seconds=20))
    assert run_id is not None and events["TaskRunsSkipped"].count == 71
    assert events["TaskRunStarted"].due_at == "2026-11-05T08:00:00.000Z"


def test_catch_up_once_runs_once_for_all_missed_due_times():
    t = task(catch_up="once")
    run_id, events = claim(t, OUTAGE)
    started = events["TaskRunStarted"]
    assert run_id is not None and "TaskRunsSkipped" not in events
    assert started.due_at == "2026-11-05T08:00:00.000Z" and len(started.covers) == 71
    assert started.next_run == "2026-11-05T09:00:00.000Z"


def test_catch_up_all_runs_the_newest_missed_due_times_one_after_another():
    t = task(catch_up="all")
    now = OUTAGE
    run_id, events = claim(t, now, max_runs=10)
    assert events["TaskRunsSkipped"].count == 62
    dues = [events["TaskRunStarted"].due_at]
    while True:
        finish(t, run_id, now)
        if not t.is_due(now):
            break
        run_id, events = claim(t, now, max_runs=10)
        dues.append(events["TaskRunStarted"].due_at)
    assert len(dues) == 10 and dues[-1] == "2026-11-05T08:00:00.000Z" and dues == sorted(dues)
    assert t.next_run == "2026-11-05T09:00:00.000Z"


def test_a_missed_once_task_with_catch_up_skip_completes_without_running():
    t = task("once", "2026-11-02T09:30:00", catch_up="skip")
    run_id, events = claim(t, OUTAGE)
    assert run_id is None and set(events) == {"TaskRunsSkipped", "TaskCompleted"} and t.status == "completed"


def test_changing_the_schedule_recomputes_next_run_for_every_type():
    t = task()
    commands.update(t, {"schedule_type": "once", "schedule_value": "2026-12-24T18:00:00"}, now=T0, by="cli")
    assert t.next_run == "2026-12-24T18:00:00.000Z"
    commands.update(t, {"schedule_value": "2026-12-25T18:00:00"}, now=T0, by="cli")  # type kept: validated as once
    assert t.next_run == "2026-12-25T18:00:00.000Z"


def test_an_invalid_update_changes_nothing():
    t = task("interval", "60000")
    before = (t.schedule_value, t.next_run)
    with pytest.raises(ValueError, match="interval"):
        commands.update(t, {"schedule_value": "soon"}, now=T0, by="cli")
    assert (t.schedule_value, t.next_run) == before and not pending_payloads(t)


def test_update_with_an_empty_script_removes_it():
    t = task(script="echo '{\"wakeAgent\": true}'")
    commands.update(t, {"script": ""}, now=T0, by="cli")
    assert t.script is None


def test_resume_does_not_catch_up_runs_missed_while_paused():
    t = task()
    t.pause(by="cli")
    t.resume(now=OUTAGE, by="cli")
    assert t.next_run == "2026-11-05T09:00:00.000Z"


def test_pause_resume_and_cancel_refuse_the_wrong_state():
    t = task()
    with pytest.raises(TaskError, match="only a paused task"):
        t.resume(now=T0, by="cli")
    t.cancel(by="cli")
    with pytest.raises(TaskError, match="cancelled"):
        t.pause(by="cli")
