"""Every projection of the read-model database, in one list: what `nanoclaw service projections` keeps live
and what `nanoclaw audit rebuild|verify` replays."""

from __future__ import annotations

from projections.agents import RunDispatches, Sessions
from projections.base import Projection
from projections.chat import chat_projections
from projections.event_log import EventLog
from projections.ext import ext_projections
from projections.governance import governance_projections
from projections.scheduler import ScheduledTasks, TaskRunLogs
from projections.queue_stats import QueueStats
from projections.run_failures import RunFailures
from projections.usage import UsageProjection


def all_projections() -> list[Projection]:
    return [EventLog(), *chat_projections(), Sessions(), RunDispatches(), UsageProjection(), ScheduledTasks(), TaskRunLogs(),
            *governance_projections(), *ext_projections(), QueueStats(), RunFailures()]
