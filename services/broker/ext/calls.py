"""The external-call aggregate (``broker/extcall/<folder>:<idempotency key>``): the claim of a key and the
call's outcome.

The claim is the aggregate's creation, appended with optimistic concurrency (expected: new), so across
restarts and broker replicas only one caller of a key ever calls out; everyone else gets the recorded result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.types import iso_utc


class ExtCall(NcAggregate):
    CONTEXT, TYPE = "broker", "extcall"

    @staticmethod
    def create_id(group_folder: str, idempotency_key: str, **_: Any) -> str:
        return f"{group_folder}:{idempotency_key}"

    @classmethod
    def start(cls, *, group_folder: str, idempotency_key: str, provider: str, product: str | None, level: int,
              method: str, host: str, params_hash: str, run_id: str | None, now: datetime) -> "ExtCall":
        return cls(group_folder=group_folder, idempotency_key=idempotency_key, provider=provider, product=product,
                   level=level, method=method, host=host, params_hash=params_hash, run_id=run_id,
                   started_at=iso_utc(now))

    @event("ExtCallStarted")
    def __init__(self, group_folder: str, idempotency_key: str, provider: str, product: str | None, level: int,
                 method: str, host: str, params_hash: str, run_id: str | None, started_at: str):
        self.group_folder, self.idempotency_key, self.provider = group_folder, idempotency_key, provider
        self.product, self.level, self.params_hash, self.started_at = product, level, params_hash, started_at
        self.finished = False
        self.status, self.outcome, self.result_sealed, self.error = 0, None, None, None

    def finish(self, *, status: int, outcome: str, duration_ms: int, result_sealed: str | None, error: str | None,
               now: datetime) -> None:
        self._finished(group_folder=self.group_folder, idempotency_key=self.idempotency_key, provider=self.provider,
                       product=self.product, level=self.level, params_hash=self.params_hash, status=status,
                       outcome=outcome, duration_ms=duration_ms, result_sealed=result_sealed, error=error,
                       finished_at=iso_utc(now))

    @event("ExtCallFinished")
    def _finished(self, group_folder: str, idempotency_key: str, provider: str, product: str | None, level: int,
                  params_hash: str, status: int, outcome: str, duration_ms: int, result_sealed: str | None,
                  error: str | None, finished_at: str) -> None:
        self.finished = True
        self.status, self.outcome, self.result_sealed, self.error = status, outcome, result_sealed, error
