"""Docker helpers for tests. A missing engine or a failed image build is a test FAILURE with the reason,
never a skip (CI=true or not).

- ``docker_client()`` → a pinged ``docker.DockerClient``.
- ``base_image()`` → ``"nanoclaw-base:bookworm"``, imported from a debootstrap rootfs when missing (≈1 min
  cold; needs root and debootstrap).
- ``agent_image()`` → the agent image's content tag ``nanoclaw-agent:<hash12>`` (≈1 min cold, a no-op when
  up to date); ``agent_image_result()`` → the full ``BuildResult`` of the session's first build.
- ``sandbox_network()`` → runner settings for a network of the caller's own, removed afterwards.
Builds are memoised for the whole test session; their log lines go to the ``tests.docker`` logger.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import random
import shutil
import subprocess
import uuid

import docker
import docker.errors
import pytest

from deploy.images import DockerUnavailable, ImageError
from deploy.images import docker_client as _connect
from deploy.images.base import BASE_IMAGE, ensure_base_image
from deploy.images.build import BuildResult

log = logging.getLogger("tests.docker")
_memo: dict[str, object] = {}


def docker_client() -> docker.DockerClient:
    """A client to a reachable engine (shared for the session), or ``pytest.fail`` saying which host was tried."""
    if "client" not in _memo:
        try:
            _memo["client"] = _connect()
        except DockerUnavailable as exc:
            pytest.fail(f"{exc}. These tests need a Docker engine: start one or point DOCKER_HOST at it.",
                        pytrace=False)
    return _memo["client"]  # type: ignore[return-value]


def base_image() -> str:
    """The local debootstrap base, built when missing."""
    if "base" not in _memo:
        try:
            ensure_base_image(docker_client(), log.debug)
        except ImageError as exc:
            pytest.fail(f"cannot build {BASE_IMAGE}: {exc}", pytrace=False)
        _memo["base"] = BASE_IMAGE
    return _memo["base"]  # type: ignore[return-value]


def agent_image_result() -> BuildResult:
    """The session's agent image build (built or found up to date on first use)."""
    if "agent" not in _memo:
        from sandbox.image import build_agent_image_result

        try:
            _memo["agent"] = build_agent_image_result(log.debug, client=docker_client())
        except ImageError as exc:
            pytest.fail(f"cannot build the agent image: {exc}", pytrace=False)
    return _memo["agent"]  # type: ignore[return-value]


def agent_image() -> str:
    """``nanoclaw-agent:<hash12>`` for the current sources."""
    return agent_image_result().tag


def free_subnet(within: str = "172.30.0.0/15") -> str:
    """A random /24 inside ``within`` that overlaps no network the engine has now (another test run's or a left-over
    compose project's /16 pool included: the engine refuses overlapping pools)."""
    taken = [ipaddress.ip_network(c["Subnet"]) for n in docker_client().networks.list()
             for c in (n.attrs.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")]
    candidates = list(ipaddress.ip_network(within).subnets(new_prefix=24))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(t) for t in taken):
            return str(subnet)
    pytest.fail(f"no free /24 left in {within}: remove left-over Docker networks (docker network prune)", pytrace=False)


@contextlib.contextmanager
def sandbox_network(prefix: str = "nanoclaw-test"):
    """Runner settings for a sandbox network of the caller's own (a unique name, a free subnet); afterwards its
    containers, the network and the runner's host firewall chain for it are gone: the engine and the host as
    they were. Yields ``{"network", "network_subnet", "stop_grace_s"}``."""
    from services.runner.config import RunnerConfig
    from services.runner.firewall import chain_name
    from services.runner.sandbox.docker import bridge_interface

    client = docker_client()
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        yield {"network": name, "network_subnet": free_subnet(), "stop_grace_s": 1}
    finally:
        for c in client.containers.list(all=True, filters={"label": f"nanoclaw.network={name}"}, ignore_removed=True):
            c.remove(force=True)
        try:
            client.networks.get(name).remove()
        except docker.errors.NotFound:
            pass
        iptables = shutil.which("iptables")
        if iptables and os.geteuid() == 0:
            iface = bridge_interface(RunnerConfig(network=name))
            for args in (["-D", "INPUT", "-i", iface, "-j", chain_name(iface)], ["-F", chain_name(iface)],
                         ["-X", chain_name(iface)]):
                subprocess.run([iptables, "-w", *args], capture_output=True, check=False)
