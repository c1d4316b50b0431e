"""Building container images on an engine with no registry: a debootstrap base, a host-side wheelhouse and
content-hashed, cached builds.

Shared here: the cache directory, the error classes and the Docker client factory used by ``base``,
``wheelhouse`` and ``build``. A progress callback is ``Callable[[str], None]``: one human-readable line
per call (build log lines, step notes), never raising.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import docker
import docker.errors
import requests.exceptions

Progress = Callable[[str], None]


def no_progress(_line: str) -> None:
    """Default progress callback: drop the line."""


class ImageError(RuntimeError):
    """An image step failed; the message names the step (``base``, ``wheelhouse``, ``build <name>``)."""


class DockerUnavailable(ImageError):
    """No Docker engine answered; the message names DOCKER_HOST so the user knows what was tried."""

    def __init__(self, cause: object = None) -> None:
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (default)"
        super().__init__(f"no Docker engine reachable (DOCKER_HOST={host})" + (f": {cause}" if cause else ""))


# docker-py raises DockerException at construction without a daemon, but requests' ConnectionError from the
# first call when a version was pinned (stack notes §3.4): both mean "no engine".
DOCKER_DOWN = (docker.errors.DockerException, requests.exceptions.ConnectionError)


def cache_dir() -> Path:
    """``$NANOCLAW_CACHE_DIR`` or ``~/.cache/nanoclaw`` (kept out of the repo: rootfs tarballs are ~170 MB)."""
    path = Path(os.environ.get("NANOCLAW_CACHE_DIR") or Path.home() / ".cache" / "nanoclaw")
    path.mkdir(parents=True, exist_ok=True)
    return path


def docker_client(timeout: int = 600) -> docker.DockerClient:
    """A connected client (pinged), or ``DockerUnavailable``. ``timeout`` (s) bounds each API call; builds
    stream, so it only needs to cover the longest silent step."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except DOCKER_DOWN as exc:
        raise DockerUnavailable(exc) from exc


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    """True when ``ref`` (``name:tag`` or id) is present on the engine."""
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:  # the engine answered, with an error: not "unavailable"
        raise ImageError(f"inspect {ref}: {exc.explanation or exc}") from exc
    except DOCKER_DOWN as exc:
        raise DockerUnavailable(exc) from exc
