"""The governance service: the dispatch loop's handlers, the agents' ``gov_*`` tools, and a private read model
(registered groups, for folder → chat and the main role; the governance tables, for listings).

Opt-in: add ``governance`` to ``services`` in config.yml (docs/governance.md).
"""

from __future__ import annotations

from projections.chat import RegisteredGroups
from projections.governance import governance_projections
from projections.readmodel import LocalReadModel
from services.governance import dispatch, ipc
from services.governance.config import GovernanceConfig
from services.governance.deps import GovernanceDeps
from services.harness.clock import Clock, SystemClock
from services.harness.context import ServiceContext
from services.harness.service import Service


def build(ctx: ServiceContext, clock: Clock | None = None) -> Service:
    """``clock``: for tests (default: the system clock).

    Raises: pydantic.ValidationError for an invalid ``governance:`` section (reported at boot)."""
    config = GovernanceConfig.model_validate(ctx.settings.governance)
    readmodel = LocalReadModel(ctx.data_dir / "governance" / "readmodel.db",
                               [RegisteredGroups(), *governance_projections()], ctx.store)
    deps = GovernanceDeps(repository=ctx.repository("governance"), readmodel=readmodel, config=config,
                          clock=clock or SystemClock())
    return Service("governance", handlers=dict(dispatch.HANDLERS), requests=dict(ipc.REQUESTS), deps=deps,
                   readmodel=readmodel)
