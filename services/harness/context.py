"""What a service builder receives from the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from events.repository import Repository
from events.store.port import EventStore
from services.harness.config import Credentials, Settings
from services.harness.metrics import Metrics
from services.harness.natsauth import RunIdentityIssuer


@dataclass
class ServiceContext:
    settings: Settings
    credentials: Credentials
    nc: Client
    store: EventStore
    metrics: Metrics
    run_identities: RunIdentityIssuer | None = None  # per-run NATS users for sandboxes (the embedded server's)

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    def repository(self, service: str) -> Repository:
        return Repository(self.store, source=service)
