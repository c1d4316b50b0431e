"""Host side of the agent image: ``build_agent_image(progress) -> "nanoclaw-agent:<hash12>"``.

Steps (each reported through ``progress`` with its prefix): ``base`` (pick/build the BASE_IMAGE),
``wheelhouse`` (host-side wheels pinned to this venv), ``image`` (content-hashed build, a no-op when
nothing changed). Errors: ``deploy.images.ImageError`` naming the step; ``DockerUnavailable``.
"""

from __future__ import annotations

from pathlib import Path

import docker

from deploy.images import Progress, docker_client, no_progress
from deploy.images.build import BuildResult, base_image_for, build_image
from deploy.images.wheelhouse import ensure_wheelhouse

IMAGE_NAME = "nanoclaw-agent"
REQUIREMENTS = ["claude-agent-sdk", "nats-py[nkeys]"]
HERE = Path(__file__).resolve().parent


def agent_context(wheel_dir: Path, package: Path = HERE) -> dict[str, Path]:
    """The build context map: Dockerfile, the wheelhouse and the agent package (``package`` = a ``sandbox``
    directory holding ``__init__.py`` and ``agent/``; tests pass a throwaway one)."""
    # Only the wheels and the pins: the wheelhouse's bookkeeping files would change the COPY layer (and so
    # force a venv reinstall) without changing what gets installed.
    wheels = {f"wheels/{p.name}": p for p in sorted(wheel_dir.glob("*.whl"))}
    return {"Dockerfile": HERE / "Dockerfile", **wheels, "wheels/requirements.txt": wheel_dir / "requirements.txt",
            "sandbox/__init__.py": package / "__init__.py", "sandbox/agent": package / "agent"}


def build_agent_image_result(progress: Progress = no_progress, *, client: docker.DockerClient | None = None,
                             package: Path = HERE, base_image: str | None = None) -> BuildResult:
    """Everything ``build_agent_image`` does, returning the full ``BuildResult`` (status, size).
    ``base_image``: an explicit BASE_IMAGE (no fallback); default: python:3.11-slim-bookworm, else the
    local debootstrap base."""
    client = client or docker_client()
    base = base_image_for(client, progress, base_image)
    base_id = client.images.get(base).id
    progress(f"base: {base} ({base_id[7:19]})")
    wheels = ensure_wheelhouse(REQUIREMENTS, progress)
    return build_image(client, IMAGE_NAME, agent_context(wheels.path, package), buildargs={"BASE_IMAGE": base},
                       hash_extra={"base_id": base_id}, progress=progress)


def build_agent_image(progress: Progress = no_progress) -> str:
    """Build (or reuse) the agent image; returns its content tag ``nanoclaw-agent:<hash12>``."""
    return build_agent_image_result(progress).tag
