"""Runner test helpers: a fake command executor, and the Docker engine check (a missing engine FAILS, never skips)."""

from __future__ import annotations

from typing import Sequence

import pytest

from services.runner.sandbox.base import CommandResult

BASE_IMAGE = "nanoclaw-base:bookworm"


class FakeExecutor:
    """Records argv lists; answers from ``replies`` (argv prefix tuple → CommandResult or exception), default rc 0."""

    def __init__(self, replies: dict[tuple[str, ...], CommandResult | Exception] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.replies = replies or {}

    async def __call__(self, argv: Sequence[str], *, timeout_s: float) -> CommandResult:
        self.calls.append(list(argv))
        for prefix in sorted(self.replies, key=len, reverse=True):
            if tuple(argv[:len(prefix)]) == prefix:
                reply = self.replies[prefix]
                if isinstance(reply, Exception):
                    raise reply
                return reply
        return CommandResult(0, "", "")


@pytest.fixture
def fake_executor() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture(scope="session")
def docker_client():
    """A docker-py client to a reachable engine, or a test FAILURE saying why (never a skip)."""
    import docker
    import docker.errors
    import requests.exceptions

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        pytest.fail(f"no Docker engine reachable (DOCKER_HOST or /var/run/docker.sock): {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The local base image the live tests run (built by scripts, never pulled)."""
    import docker.errors

    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {BASE_IMAGE} not found: build it first (deploy/images)")
    return BASE_IMAGE
