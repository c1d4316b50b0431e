"""The container runner service: wiring of the sandbox backend, relays, run manager and handlers."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlparse

from projections.agents import RunDispatches, Sessions
from projections.chat import RegisteredGroups
from projections.readmodel import LocalReadModel
from services.harness.config import ConfigError
from services.harness.context import ServiceContext
from services.harness.service import Emit, Service
from services.runner import handlers
from services.runner.config import DEFAULT_IDLE_TIMEOUT_MS, RunnerConfig
from services.runner.firewall import confine
from services.runner.mount_allowlist import MountAllowlistLoader
from services.runner.mounts import RunnerPaths
from services.runner.relay import TcpRelay
from services.runner.runs import Endpoints, RunManager
from services.runner.sandbox.apple import AppleContainerBackend
from services.runner.sandbox.base import SandboxBackend
from services.runner.sandbox.docker import DockerBackend, bridge_interface
from services.runner.sandbox.process import ProcessBackend

log = logging.getLogger("nanoclaw.runner")


def backend_for(config: RunnerConfig) -> SandboxBackend:
    """The configured backend. ``process`` only when named (it warns loudly); never a silent fallback."""
    if config.backend == "process":
        return ProcessBackend(agent_argv=config.agent_command) if config.agent_command else ProcessBackend()
    if config.backend == "apple-container":
        return AppleContainerBackend(config)
    return DockerBackend(config)


def build(ctx: ServiceContext) -> Service:
    """Raises: pydantic.ValidationError for an invalid ``runner:`` section; ConfigError when the bus gives no
    per-run NATS identities or credentials.yml has no ``run_token_key``."""
    config = RunnerConfig.model_validate(ctx.settings.runner)
    if ctx.run_identities is None:
        raise ConfigError("the runner needs per-run NATS identities: run it under `nanoclaw up` (embedded NATS), "
                          "or a deployment that provides them (docs/agent-runs.md)")
    if ctx.credentials.run_token_key is None:
        raise ConfigError("credentials.yml: run_token_key is not set (the runner and the broker share it)")
    backend = backend_for(config)
    readmodel = LocalReadModel(ctx.data_dir / "runner" / "readmodel.db", [RegisteredGroups(), Sessions(), RunDispatches()],
                               ctx.store)
    manager = RunManager(config=config, backend=backend, store=ctx.store, nc=ctx.nc, issuer=ctx.run_identities,
                         paths=RunnerPaths.from_data_dir(ctx.data_dir),
                         allowlist=MountAllowlistLoader(config.mount_allowlist.expanduser()),
                         token_key=ctx.credentials.run_token_key.get_secret_value().encode(),
                         assistant_name=ctx.settings.assistant_name, timezone=ctx.settings.timezone,
                         idle_timeout_ms=_queue_idle_timeout_ms(ctx))
    deps = handlers.RunnerDeps(manager, readmodel)
    relays: list[TcpRelay] = []

    async def start(deps: handlers.RunnerDeps) -> list[Emit]:
        await backend.ensure_available()
        manager.endpoints = await _endpoints(config, backend, ctx, relays)
        return await handlers.recover(deps)

    async def until_stopped(_deps: handlers.RunnerDeps) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await manager.shutdown()
            for relay in relays:
                await relay.close()

    return Service(
        "runner",
        handlers={"RunDispatched": handlers.on_dispatched, "RunInputPiped": handlers.on_input_piped,
                  "RunCloseRequested": handlers.on_close_requested,
                  "RunCloseTimedOut": handlers.on_close_timed_out},
        deps=deps,
        readmodel=readmodel,
        on_start=start,
        tasks=[until_stopped],
        max_deliver=-1,  # a dispatch must never be dead-lettered: the queue would wait for it forever
    )


def _queue_idle_timeout_ms(ctx: ServiceContext) -> int:
    """``queue.idle_timeout_ms`` (the queue closes idle runs; the hard timeout must outlast that close). Read
    from the raw section: services do not import each other's configuration."""
    value = (ctx.settings.queue or {}).get("idle_timeout_ms", DEFAULT_IDLE_TIMEOUT_MS)
    return value if isinstance(value, int) and value >= 0 else DEFAULT_IDLE_TIMEOUT_MS


async def _endpoints(config: RunnerConfig, backend: SandboxBackend, ctx: ServiceContext,
                     relays: list[TcpRelay]) -> Endpoints:
    """Where sandboxes reach NATS and the model proxy. Given by the deployment (``sandbox_endpoints``): those
    names, on its network. Otherwise, containers: the internal network's gateway, where the runner relays the
    two loopback ports (nothing else of the host is reachable); process mode: loopback."""
    if config.sandbox_endpoints is not None:
        given = config.sandbox_endpoints
        return Endpoints(",".join(given.nats_urls), given.model_proxy_url.rstrip("/"))
    nats = ctx.nc.connected_url  # a parsed URL (it may carry the services password: never handed on)
    proxy = urlparse(config.model_proxy_url)
    nats_host, nats_port = (nats.hostname or "127.0.0.1", nats.port or 4222) if nats else ("127.0.0.1", 4222)
    proxy_host, proxy_port = proxy.hostname or "127.0.0.1", proxy.port or 80
    if config.backend != "docker":
        return Endpoints(f"nats://{nats_host}:{nats_port}", config.model_proxy_url.rstrip("/"))
    gateway = await backend.ensure_network()  # type: ignore[attr-defined]
    for port, host in ((nats_port, nats_host), (proxy_port, proxy_host)):
        relays.append(await TcpRelay(gateway, port, host, port).start())
    await confine(bridge_interface(config), [nats_port, proxy_port])
    return Endpoints(f"nats://{gateway}:{nats_port}", f"http://{gateway}:{proxy_port}")
