"""The router service: wiring of handlers, read model and configuration."""

from __future__ import annotations

import logging
from pathlib import Path

from projections.chat import router_projections
from projections.readmodel import LocalReadModel
from services.harness.context import ServiceContext
from services.harness.service import Service
from services.router import handlers, ipc, notices, undelivered
from services.router.config import RouterConfig
from services.router.sender_allowlist import SenderAllowlist, load_sender_allowlist

log = logging.getLogger("nanoclaw.router")


def build(ctx: ServiceContext) -> Service:
    """Raises: pydantic.ValidationError for an invalid ``router:`` section (reported at boot)."""
    config = RouterConfig.model_validate(ctx.settings.router)
    readmodel = LocalReadModel(ctx.data_dir / "router" / "readmodel.db", router_projections(), ctx.store)
    deps = handlers.RouterDeps(readmodel=readmodel, repository=ctx.repository("router"), config=config,
                               assistant_name=ctx.settings.assistant_name, timezone=ctx.settings.timezone,
                               allowlist=_allowlist_loader(config))
    return Service(
        "router",
        handlers={"MessageReceived": handlers.on_message_received, "AgentOutputProduced": handlers.on_agent_output,
                  **notices.HANDLERS, **undelivered.HANDLERS},
        requests=ipc.REQUESTS,
        deps=deps,
        readmodel=readmodel,
        on_start=handlers.recover_pending,
    )


def _allowlist_loader(config: RouterConfig):
    """Re-read the allowlist file when it changes (v1 re-reads it on every check)."""
    if config.sender_allowlist is None:
        return lambda: None
    path = Path(config.sender_allowlist).expanduser()
    cache: dict[str, object] = {"mtime": None, "value": None}

    def load() -> SenderAllowlist:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        if cache["mtime"] != mtime:
            cache["value"] = load_sender_allowlist(path, fail_closed=config.sender_allowlist_fail_closed)
            cache["mtime"] = mtime
        return cache["value"]  # type: ignore[return-value]

    return load
