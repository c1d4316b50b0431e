"""Record a security refusal of a sandbox's request as a ``SandboxRequestRefused`` event (an audit trail of
denied operations, not only a log line). One function for every surface: IPC tools and reply subjects (the
harness), the model proxy (broker) and host paths (runner)."""

from __future__ import annotations

import asyncio
import uuid

import nats.errors

from events.catalogue.system import SandboxRequestRefused
from events.catalogue.types import iso_utc
from events.envelope import utcnow
from events.errors import EventStoreError
from events.store.port import EventStore
from services.harness.emit import append_emit
from services.harness.logging import get_logger
from services.harness.service import Emit

log = get_logger("nanoclaw.security")


async def record_refusal(store: EventStore, *, service: str, group_folder: str, surface: str, operation: str,
                         reason: str, run_id: str | None = None) -> None:
    """Append ``SandboxRequestRefused`` to ``system.refusal/<service>`` and log a warning. Never raises: the
    refusal itself already happened, and an unreachable store must not turn it into a crash (the failure to
    record is logged as an error instead). ``operation`` and ``reason`` are cut to 300 and 1,000 characters."""
    event = SandboxRequestRefused(service=service, group_folder=group_folder, run_id=run_id, surface=surface,
                                  operation=operation[:300], reason=reason[:1000], at=iso_utc(utcnow()))
    log.warning("refused a sandbox request", service=service, group=group_folder, run_id=run_id, surface=surface,
                operation=event.operation, reason=event.reason)
    try:
        await append_emit(store, Emit.append(service, event), source=service, msg_id=f"refusal:{uuid.uuid4()}")
    except (EventStoreError, nats.errors.Error, asyncio.TimeoutError) as exc:
        log.error("could not record a refusal", service=service, group=group_folder, surface=surface,
                  error=f"{type(exc).__name__}: {exc}")
