"""What the governance handlers and IPC tools receive: read ports only (aggregate loads, the private read model,
configuration, the clock)."""

from __future__ import annotations

from dataclasses import dataclass

from events.catalogue.types import iso_utc
from events.repository import Repository
from projections.chat import GroupRef, group_by_folder
from services.governance.config import GovernanceConfig
from services.governance.policy import roles_of
from services.governance.queries import ReadModel
from services.harness.clock import Clock


@dataclass
class GovernanceDeps:
    repository: Repository
    readmodel: ReadModel
    config: GovernanceConfig
    clock: Clock

    def now(self) -> str:
        """The current time as stored in events (ISO-8601 UTC)."""
        return iso_utc(self.clock.now())

    def roles(self, folder: str) -> frozenset[str]:
        """The roles of a group folder; empty for a folder that is not a registered group."""
        group = group_by_folder(self.readmodel, folder)
        return self.group_roles(group) if group else frozenset()

    def group_roles(self, group: GroupRef) -> frozenset[str]:
        """The roles of a registered group already looked up."""
        return roles_of(group.folder, self.config, is_main=group.is_main)
