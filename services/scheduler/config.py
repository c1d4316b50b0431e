"""Scheduler settings (the ``scheduler:`` section of config.yml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SchedulerConfig(BaseModel):
    """Args:
        misfire_grace_s: how late (s) a due time may be claimed and still count as on time rather than
            missed (catch-up policy ``skip`` drops missed ones). Default 60 s, v1's polling period.
        max_catch_up_runs: with catch-up ``all``, the most missed due times run after an outage (the newest);
            older ones are skipped and recorded.
        report_errors: send a short notice to the task's chat when a run fails or the scheduler pauses the
            task (v1 never told the user, quirk 8).
        request_timeout_s: how long the clock waits for the read model to catch up before claiming due runs (s).

    Raises (on validation): pydantic.ValidationError for unknown keys or out-of-range values.
    """

    model_config = ConfigDict(extra="forbid")

    misfire_grace_s: float = Field(60.0, ge=0)
    max_catch_up_runs: int = Field(10, ge=1, le=1000)
    report_errors: bool = False
    request_timeout_s: float = Field(10.0, gt=0)
