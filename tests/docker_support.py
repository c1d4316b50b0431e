"""Docker helpers for tests. A missing engine or a failed image build is a test FAILURE with the reason,
never a skip (CI=true or not).

- ``docker_client()`` → a pinged ``docker.DockerClient``.
- ``base_image()`` → ``"nanoclaw-base:bookworm"``, imported from a debootstrap rootfs when missing (≈1 min
  cold; needs root and debootstrap).
- ``agent_image()`` → the agent image's content tag ``nanoclaw-agent:<hash12>`` (≈1 min cold, a no-op when
  up to date); ``agent_image_result()`` → the full ``BuildResult`` of the session's first build.
Builds are memoised for the whole test session; their log lines go to the ``tests.docker`` logger.
"""

from __future__ import annotations

import logging

import docker
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
