"""Queue settings (the ``queue:`` section of config.yml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QueueConfig(BaseModel):
    """Args:
        max_concurrent: agent runs at once over all groups (v1 ``MAX_CONCURRENT_CONTAINERS``, default 5, min 1);
            message and task runs share it. Always at most one run per group.
        max_retries: retries of a group's failed message run before the queue gives up until the next message
            (v1 ``MAX_RETRIES``); 0 never retries.
        base_retry_ms: the first retry's delay in ms; retry n waits ``base_retry_ms · 2^(n-1)`` (v1
            ``BASE_RETRY_MS``: 5 s, 10 s, 20 s, 40 s, 80 s).
        idle_timeout_ms: how long an idle message run is kept for the next message before the queue closes it
            (v1 ``IDLE_TIMEOUT``, 30 min). An idle run is closed at once when work it cannot take waits for its
            group or for a slot. Moved here from ``runner.idle_timeout_ms`` (the queue owns the run lifecycle).
        task_close_delay_ms: how long a task run is kept after its result before it is closed (tasks are
            single-turn; v1 ``TASK_CLOSE_DELAY_MS``, 10 s). Moved here from ``runner.task_close_delay_ms``.
        close_timeout_ms: how long the queue waits for a run it asked to close to end (``AgentRunFinished``)
            before it releases the group anyway (``RunCloseTimedOut``; the run's unanswered turns are retried). The
            runner itself kills a run that does not take its close within ``runner.close_grace_s`` (+ its
            ``stop_grace_s``), so this only fires when the runner cannot act (down, cut off): keep it above both.
        turn_gap_timeout_ms: how long a chat's turn that arrived ahead of an earlier one is held for that one
            (normally it arrives within the bus's ack wait, 10 s, after a queue crash) before the queue stops
            waiting (``TurnGapSkipped``).

    Raises (on validation): pydantic.ValidationError for unknown keys or out-of-range values.
    """

    model_config = ConfigDict(extra="forbid")

    max_concurrent: int = Field(5, ge=1)
    max_retries: int = Field(5, ge=0)
    base_retry_ms: int = Field(5000, ge=1)
    idle_timeout_ms: int = Field(1_800_000, ge=0)
    task_close_delay_ms: int = Field(10_000, ge=0)
    close_timeout_ms: int = Field(120_000, ge=1_000)
    turn_gap_timeout_ms: int = Field(60_000, ge=0)

    def retry_delay_ms(self, attempt: int) -> int:
        """Delay before retry ``attempt`` (1-based) in ms."""
        return self.base_retry_ms * 2 ** (attempt - 1)
