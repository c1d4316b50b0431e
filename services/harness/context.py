"""What a service builder receives from the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from events.repository import Repository
from events.store.port import EventStore
from services.harness.config import Credentials, Settings
from services.harness.metrics import Metrics


@dataclass
class ServiceContext:
    settings: Settings
    credentials: Credentials
    nc: Client
    store: EventStore
    metrics: Metrics

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    def repository(self, service: str) -> Repository:
        return Repository(self.store, source=service)
