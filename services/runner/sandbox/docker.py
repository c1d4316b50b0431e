"""Docker backend: ``docker run -i --rm …`` as a subprocess for the run itself (stack-notes §3.2: stdin EOF,
separate stdout/stderr and exit codes behave like a normal process), docker-py in a thread for management
(ping, the internal network, listing and removing orphans by label), and the CLI for ``stop``/``kill``.

The argv is built by the pure :func:`docker_argv` from a :class:`SandboxSpec` and the :class:`SandboxPolicy`.
Mounts use ``--mount type=bind`` rather than ``-v``: a missing source is an error instead of a root-owned
directory the engine creates on the host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import logging
import shutil
from typing import Any, Callable

import docker
import docker.errors
import docker.types
import requests.exceptions

from services.runner.config import RunnerConfig
from services.runner.policy import NETWORK_LABEL, SandboxPolicy, policy_from_config
from services.runner.sandbox.base import (AGENT_LABEL_FILTER, RUNTIME_REQUIRED, CommandExecutor, ExecProcess,
                                          SandboxSpec, SandboxUnavailable, exec_command, stop_then_kill,
                                          spawn, user_ids)
from services.runner.sandbox.engine import EngineSecurity

logger = logging.getLogger(__name__)

NETWORK_ROLE = {"nanoclaw.role": "sandbox-network"}
_GONE = ("No such container", "is not running")
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.ConnectionError)
"""stack-notes §3.4: without a daemon docker-py raises either, depending on whether it probed the version."""


def gateway_ip(config: RunnerConfig) -> str:
    """The host's address on the sandbox network: the first host of ``network_subnet`` (``172.29.0.1``)."""
    return str(next(ipaddress.ip_network(config.network_subnet).hosts()))


def bridge_interface(config: RunnerConfig) -> str:
    """The host interface name of the sandbox network (``ncsbx-<6 hex>``, fixed per network name, ≤ 15 chars),
    so a host firewall rule can name it: the internal network stops forwarding, but host services bound to
    0.0.0.0 stay reachable from sandboxes at any host address unless INPUT drops this interface."""
    return "ncsbx-" + hashlib.sha256(config.network.encode()).hexdigest()[:6]


def docker_argv(spec: SandboxSpec, policy: SandboxPolicy, docker_cli: str = "docker") -> list[str]:
    """The ``docker run`` argv for ``spec`` under ``policy`` (pure). Order: run options, hardening, limits,
    network, labels, env (sorted), workdir, mounts, image, command.

    Raises:
        ValueError: the effective user is root.
    """
    user = spec.user or policy.user
    if user.split(":")[0] in {"0", "root", ""}:
        raise ValueError("the sandbox never runs as root")
    limits = spec.limits or policy.limits
    # --pull=never: images are built locally; a missing one must fail at once, not try a registry.
    argv = [docker_cli, "run", "-i", "--rm", "--name", spec.name, "--pull=never"]
    argv += ["--read-only"] if policy.read_only_root else []
    argv += [f"--cap-drop={cap}" for cap in policy.cap_drop]
    argv += ["--security-opt=no-new-privileges"] if policy.no_new_privileges else []
    argv += [f"--user={user}"]
    argv += [f"--pids-limit={limits.pids}", f"--memory={limits.memory}", f"--memory-swap={limits.memory}",
             f"--cpus={limits.cpus:g}"]
    argv += [f"--tmpfs={target}:{policy.tmpfs_options(target)}" for target in policy.tmpfs]
    argv += ["--init"] if policy.init else []
    argv += [f"--runtime={policy.runtime}"] if policy.runtime else []
    argv += [f"--network={policy.network}", f"--log-driver={policy.log_driver}"]
    labels = {**spec.labels, **policy.labels}  # the policy's role label always wins
    for key in sorted(labels):
        argv += ["--label", f"{key}={labels[key]}"]
    for key in sorted(spec.env):
        argv += ["-e", f"{key}={spec.env[key]}"]
    argv += ["-w", spec.workdir] if spec.workdir else []
    for m in spec.mounts:
        argv += ["--mount", f"type=bind,source={m.host},target={m.container}" + (",readonly" if m.read_only else "")]
    argv += [spec.image, *spec.command]
    return argv


def init_available(info: dict[str, Any]) -> bool:
    """Best effort from ``docker info``: an init binary is configured and its commit is not ``"N/A"`` (what
    engines may report when ``docker-init --version`` fails; 20.10 with Debian's tini reports ``""`` and works).
    A binary missing despite this check shows up as failed runs naming docker-init in stderr."""
    return bool(info.get("InitBinary")) and (info.get("InitCommit") or {}).get("ID") != "N/A"


def _engine_client() -> Any:
    return docker.from_env(timeout=10)  # v1: `docker info` with a 10 s timeout


class DockerBackend:
    """Args:
        config: the runner settings (network, subnet, stop grace).
        policy: hardening; default :func:`policy_from_config`.
        executor: runs ``docker stop``/``docker kill`` (tests pass a fake).
        client_factory: returns a docker-py ``DockerClient`` (tests pass a fake); called in a thread.
        docker_cli: the docker CLI program.
        scope_label: an extra ``key=value`` label that :meth:`remove_orphans` also requires (besides
            ``nanoclaw.role=agent`` and ``nanoclaw.network=<network>``). Add the same label to the policy's labels
            so new sandboxes carry it.
    """

    kind = "docker"

    def __init__(self, config: RunnerConfig, *, policy: SandboxPolicy | None = None,
                 executor: CommandExecutor = exec_command, client_factory: Callable[[], Any] = _engine_client,
                 docker_cli: str = "docker", scope_label: str | None = None) -> None:
        self.config, self.policy = config, policy or policy_from_config(config)
        # Only agents on this runner's network are its orphans: several installations (or test runs) may share
        # one engine, and a runner starting must not stop the others' live sandboxes.
        self._orphan_filter = [AGENT_LABEL_FILTER, f"{NETWORK_LABEL}={config.network}",
                               *([scope_label] if scope_label else [])]
        self._executor, self._client_factory, self._cli = executor, client_factory, docker_cli
        self._client: Any = None
        self.engine: EngineSecurity | None = None  # set by ensure_available, from docker info

    async def _engine(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)`` in a thread; engine errors become SandboxUnavailable."""
        def call() -> Any:
            if self._client is None:
                self._client = self._client_factory()
            return fn(self._client)
        try:
            return await asyncio.to_thread(call)
        except _ENGINE_ERRORS as exc:
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: {exc}") from exc

    async def ensure_available(self) -> None:
        """Ping the engine, check the CLI, the init binary and the engine's security layers (seccomp, user
        namespaces, the configured runtime), create the internal network, and warn if the image is missing (runs
        then fail with exit 125 until it is built; nothing is ever pulled).

        Raises:
            SandboxUnavailable: ``"Container runtime is required but failed to start: <cause>"``, e.g. a
                ``runner.runtime`` the engine does not know.
        """
        if shutil.which(self._cli) is None:
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: docker CLI {self._cli!r} not found on PATH")
        info = await self._engine(lambda c: (c.ping(), c.info())[1])
        if self.policy.init and not init_available(info):
            # Without docker-init, --init would fail every run; the image's tini still reaps (stack-notes §3.1).
            logger.warning("docker engine reports no init binary; running sandboxes without --init")
            self.policy = dataclasses.replace(self.policy, init=False)
        self.engine = self.check_engine(EngineSecurity.from_info(info))
        await self.ensure_network()
        if not await self.image_present(self.config.image):
            logger.warning("agent image %s not found locally: runs fail until it is built", self.config.image)
        logger.info("Container runtime already running (docker, network %s)", self.config.network)

    def check_engine(self, engine: EngineSecurity) -> EngineSecurity:
        """Refuse an engine that lacks ``runner.runtime`` or whose user remapping cannot be read; warn when it has
        no seccomp profile; log the isolation layers in force. Returns ``engine``.

        Raises:
            SandboxUnavailable: the runtime is unknown to the engine, or the remap base is unreadable.
        """
        runtime = self.policy.runtime
        if runtime and runtime not in engine.runtimes:
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: runner.runtime {runtime!r} is not a runtime of this docker "
                                     f"engine (it has: {', '.join(sorted(engine.runtimes)) or 'none'}); install and "
                                     f"register it (gVisor: `runsc install`, then restart dockerd) or unset runner.runtime")
        try:
            owner = engine.host_ids(*user_ids(self.policy.user))
        except ValueError as exc:
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: {exc}") from None
        if not engine.seccomp:
            logger.warning("the docker engine applies no seccomp profile: sandboxes get every system call the "
                           "kernel offers (docs/agent-runs.md, defence in depth)")
        logger.info("sandbox isolation: seccomp %s, user namespaces %s, runtime %s, sandbox user owned on the host "
                    "by %d:%d", engine.seccomp_profile or ("on" if engine.seccomp else "OFF"),
                    "remapped" if engine.userns else "rootless daemon" if engine.rootless else "not remapped", runtime or engine.default_runtime or "default",
                    *owner)
        return engine

    def host_owner(self) -> tuple[int, int] | None:
        """The sandbox user's host ids: ``runner.user``, shifted by the remap base when the engine remaps user
        namespaces (known after :meth:`ensure_available`)."""
        ids = user_ids(self.policy.user)
        return self.engine.host_ids(*ids) if self.engine else ids

    async def image_present(self, image: str) -> bool:
        """Whether ``image`` exists locally (nothing is ever pulled)."""
        def get(c: Any) -> bool:
            try:
                c.images.get(image)
                return True
            except docker.errors.ImageNotFound:
                return False
        return await self._engine(get)

    async def ensure_network(self) -> str:
        """Create the internal network if missing; return its gateway IP.

        Raises:
            SandboxUnavailable: the network exists but is not internal or has another subnet (never run there).
        """
        return await self._engine(self._ensure_network_sync)

    def _ensure_network_sync(self, client: Any) -> str:
        if self.config.sandbox_endpoints is not None:
            return self._check_provided_network(client)
        name, subnet, gateway = self.config.network, self.config.network_subnet, gateway_ip(self.config)
        try:
            net = client.networks.get(name)
        except docker.errors.NotFound:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet, gateway=gateway)])
            try:
                # enable_icc=false: sandboxes of different groups cannot talk to each other either.
                client.networks.create(name, driver="bridge", internal=True, ipam=ipam, labels=NETWORK_ROLE,
                                       options={"com.docker.network.bridge.enable_icc": "false",
                                                "com.docker.network.bridge.name": bridge_interface(self.config)})
                logger.info("created sandbox network %s (%s, internal)", name, subnet)
            except docker.errors.APIError as exc:
                created_error = exc  # maybe created concurrently by another runner: read it back below
            else:
                created_error = None
            try:
                net = client.networks.get(name)  # the create response lacks the IPAM details checked below
            except docker.errors.NotFound:
                raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: cannot create network {name!r} ({subnet}): "
                                         f"{created_error}") from created_error
        attrs = net.attrs
        configs = (attrs.get("IPAM") or {}).get("Config") or []
        if not attrs.get("Internal"):
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: network {name!r} exists but is not internal; "
                                     f"remove it (docker network rm {name}) so the runner can recreate it")
        if not any(c.get("Subnet") == subnet for c in configs):
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: network {name!r} has subnet "
                                     f"{[c.get('Subnet') for c in configs]}, runner.network_subnet is {subnet}")
        return next((c["Gateway"] for c in configs if c.get("Subnet") == subnet and c.get("Gateway")), gateway)

    def _check_provided_network(self, client: Any) -> str:
        """The deployment's network (``sandbox_endpoints`` set): it must exist and be internal; the runner never
        creates it, since NATS and the model proxy have to be members. Returns ``""`` (no gateway is used)."""
        name = self.config.network
        try:
            net = client.networks.get(name)
        except docker.errors.NotFound:
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: network {name!r} not found; with runner.sandbox_endpoints "
                                     f"set, the deployment provides it (docs/deploy.md)") from None
        if not net.attrs.get("Internal"):
            raise SandboxUnavailable(f"{RUNTIME_REQUIRED}: network {name!r} is not internal: sandboxes would "
                                     f"reach the internet")
        return ""

    async def run(self, spec: SandboxSpec) -> ExecProcess:
        """``docker run -i --rm …``; raises OSError if the CLI cannot be spawned."""
        return await spawn(spec.name, docker_argv(spec, self.policy, self._cli))

    async def stop(self, name: str, grace_s: float) -> None:
        """``docker stop -t <grace> <name>`` (SIGTERM, SIGKILL after grace); if that fails, ``docker kill``.
        A container that is already gone is fine. Raises ValueError (nothing executed) or SandboxError."""
        await stop_then_kill(self._executor, self._cli, name, grace_s, _GONE)

    async def list_names(self, label: str) -> list[str]:
        # The low-level list: the high-level one inspects each container and fails on one removed meanwhile.
        rows = await self._engine(lambda c: c.api.containers(all=True, filters={"label": label}))
        return [row["Names"][0].lstrip("/") for row in rows if row.get("Names")]

    async def remove_orphans(self) -> list[str]:
        """v1 ``cleanupOrphans`` by label: stop and remove every ``nanoclaw.role=agent`` container (a runner
        starting has none of its own yet). One failure does not stop the others; every failure is a warning."""
        try:
            containers = await self._engine(
                lambda c: c.containers.list(all=True, filters={"label": self._orphan_filter}, ignore_removed=True))
        except SandboxUnavailable as exc:
            logger.warning("Failed to clean up orphaned containers: %s", exc)
            return []
        removed = []
        for container in containers:
            try:
                await asyncio.to_thread(_stop_and_remove, container)
                removed.append(container.name)
            except Exception as exc:  # noqa: BLE001 — one bad container must not keep the others running
                logger.warning("Failed to stop orphaned container %s: %s", container.name, exc)
        if removed:
            logger.info("Stopped %d orphaned container(s): %s", len(removed), ", ".join(removed))
        return removed


def _stop_and_remove(container: Any) -> None:
    try:
        container.stop(timeout=1)  # v1: docker stop -t 1
        container.remove(force=True)  # for containers that were never started, or lost --rm
    except docker.errors.NotFound:  # --rm removed it once stopped
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc):  # --rm is removing it right now
            raise
