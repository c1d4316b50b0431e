"""Content-hashed, cached image builds through docker-py's low-level API (legacy builder: stack notes §4.3).

``build_image`` assembles a build context in a temp dir from a ``{context path: source}`` map, hashes it,
and tags ``<name>:<hash12>`` and ``<name>:latest``. When ``<name>:<hash12>`` already exists nothing is built
(status ``"cached"``), so an unchanged rebuild costs only the copy and the hash.

Also ``resolve_base_image``: which ``BASE_IMAGE`` to build on (the public slim image, else the local
debootstrap base).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Union

import docker
import requests.exceptions

from deploy.images import (DOCKER_DOWN, DockerUnavailable, ImageError, Progress, cache_dir, image_exists,
                           no_progress)
from deploy.images.base import BASE_IMAGE as LOCAL_BASE
from deploy.images.base import ensure_base_image

DEFAULT_BASE = "python:3.11-slim-bookworm"
PULL_TIMEOUT_S = 60  # per read, not total: a working pull streams progress; an unreachable registry fails at once
Source = Union[Path, bytes, str]  # a file or directory to copy, or literal content
_SKIP = {"__pycache__", ".pytest_cache", ".mypy_cache"}


@dataclass(frozen=True)
class BuildResult:
    """``tag`` = ``<name>:<hash12>``; ``latest`` = ``<name>:latest``; ``status`` = ``"built"`` | ``"cached"``;
    ``size`` in bytes (the engine's uncompressed image size); ``image_id`` = ``sha256:…``."""

    tag: str
    latest: str
    status: str
    size: int
    image_id: str


def assemble(files: Mapping[str, Source], dest: Path) -> None:
    """Write each source at ``dest/<context path>``; directories are copied recursively without caches or
    bytecode. Large files are hard-linked when on the same filesystem (wheels are ~170 MB)."""
    for rel, src in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, (bytes, str)):
            target.write_bytes(src.encode() if isinstance(src, str) else src)
        elif src.is_dir():
            shutil.copytree(src, target, ignore=_ignore, copy_function=_link_or_copy, dirs_exist_ok=True)
        elif src.is_file():
            _link_or_copy(src, target)
        else:
            raise ImageError(f"build context: {src} (for {rel}) does not exist")


def context_hash(root: Path, extra: Mapping[str, str] | None = None) -> str:
    """sha256 hex over every file's relative path, executable bit and bytes, in path order, plus ``extra``
    (build args, base image id: anything else that changes the result)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{os.access(path, os.X_OK)}\0".encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    for key in sorted(extra or {}):
        digest.update(f"\0extra\0{key}={extra[key]}".encode())
    return digest.hexdigest()


def build_image(client: docker.DockerClient, name: str, files: Mapping[str, Source], *,
                buildargs: Mapping[str, str] | None = None, hash_extra: Mapping[str, str] | None = None,
                progress: Progress = no_progress) -> BuildResult:
    """Build (or find) ``name`` from ``files`` (must include ``"Dockerfile"``).

    Errors: ``ImageError("build <name>: step N/M : … failed: …")`` naming the failing step;
    ``DockerUnavailable`` when the engine cannot be reached.
    """
    if "Dockerfile" not in files:
        raise ImageError(f"build {name}: no Dockerfile in the build context")
    buildargs = dict(buildargs or {})
    work = Path(tempfile.mkdtemp(prefix=f"ctx-{name.replace('/', '_')}-", dir=_tmp_root()))
    try:
        assemble(files, work)
        digest = context_hash(work, {**{f"arg:{k}": v for k, v in buildargs.items()}, **(hash_extra or {})})
        tag, latest = f"{name}:{digest[:12]}", f"{name}:latest"
        if image_exists(client, tag):
            progress(f"image: {tag} is up to date (context unchanged)")
            status = "cached"
        else:
            progress(f"image: building {tag}")
            _stream_build(client, name, work, tag, buildargs, progress)
            status = "built"
        try:
            image = client.images.get(tag)
            image.tag(name, "latest")  # cheap and idempotent; keeps :latest on the current content
        except docker.errors.APIError as exc:
            raise ImageError(f"build {name}: tagging {latest} failed: {exc.explanation or exc}") from exc
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(exc) from exc
        return BuildResult(tag, latest, status, int(image.attrs.get("Size", 0)), image.id)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def resolve_base_image(wanted: str | None, *, present: Callable[[str], bool], pull: Callable[[str], str | None],
                       make_local: Callable[[], object], progress: Progress = no_progress) -> str:
    """Decide the ``BASE_IMAGE`` build arg. Pure decision logic; the engine is reached only via the callables:
    ``present(ref)`` → on the engine?, ``pull(ref)`` → ``None`` on success or the error text,
    ``make_local()`` → builds ``nanoclaw-base:bookworm`` when missing.

    ``wanted`` None means the default (``python:3.11-slim-bookworm``), which falls back to the local debootstrap
    base when it is neither present nor pullable. An explicitly named image never falls back (the user asked
    for it): ``ImageError`` instead.
    """
    explicit = wanted is not None
    wanted = wanted or DEFAULT_BASE
    if wanted == LOCAL_BASE:
        make_local()
        return LOCAL_BASE
    if present(wanted):
        return wanted
    error = pull(wanted)
    if error is None:
        progress(f"base: pulled {wanted}")
        return wanted
    if explicit:
        raise ImageError(f"base: {wanted} is not on the engine and cannot be pulled: {error}")
    progress(f"base: {wanted} is not on the engine and cannot be pulled ({error}); "
             f"using the local debootstrap base {LOCAL_BASE} instead")
    make_local()
    return LOCAL_BASE


def base_image_for(client: docker.DockerClient, progress: Progress = no_progress, wanted: str | None = None) -> str:
    """``resolve_base_image`` against a real engine; ``wanted`` or else ``$NANOCLAW_BASE_IMAGE`` names an
    explicit base (no fallback), neither means the default with fallback."""
    return resolve_base_image(wanted or os.environ.get("NANOCLAW_BASE_IMAGE") or None,
                              present=lambda ref: image_exists(client, ref),
                              pull=lambda ref: _try_pull(client, ref, progress),
                              make_local=lambda: ensure_base_image(client, progress), progress=progress)


def _try_pull(client: docker.DockerClient, ref: str, progress: Progress) -> str | None:
    repo, _, tag = ref.partition(":")
    progress(f"base: pulling {ref} (timeout {PULL_TIMEOUT_S} s)")
    saved = client.api.timeout
    client.api.timeout = PULL_TIMEOUT_S  # docker-py reads it per request; restored below
    try:
        for event in client.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
            if "error" in event:
                return str(event["error"]).strip()
        return None if image_exists(client, ref) else "pull finished without the image"
    except docker.errors.APIError as exc:
        return str(exc.explanation or exc).strip()
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(exc) from exc
    except requests.exceptions.RequestException as exc:  # ReadTimeout is not a ConnectionError: catch both
        return f"no answer within {PULL_TIMEOUT_S} s ({type(exc).__name__})"
    finally:
        client.api.timeout = saved


def _stream_build(client: docker.DockerClient, name: str, context: Path, tag: str, buildargs: dict[str, str],
                  progress: Progress) -> None:
    """Run the legacy build, forwarding each log line; remember the last ``Step N/M`` to name it on failure."""
    step = "before the first step"
    try:
        for chunk in client.api.build(path=str(context), tag=tag, buildargs=buildargs, rm=True, forcerm=True,
                                      pull=False, decode=True):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageError(f"build {name}: {step} failed: {detail.strip()}")
            for line in str(chunk.get("stream") or chunk.get("status") or "").splitlines():
                if line.strip():
                    if line.startswith("Step "):
                        step = line.strip()
                    progress(f"image: {line.rstrip()}")
    except docker.errors.APIError as exc:
        raise ImageError(f"build {name}: {step} failed: {exc.explanation or exc}") from exc
    except docker.errors.BuildError as exc:
        raise ImageError(f"build {name}: {step} failed: {exc.msg}") from exc
    except requests.exceptions.ReadTimeout as exc:
        raise ImageError(f"build {name}: {step} printed nothing for {client.api.timeout} s; gave up") from exc
    except DOCKER_DOWN as exc:
        raise DockerUnavailable(exc) from exc


def _tmp_root() -> Path:
    # Under the cache dir so that hard links to cached wheels work (same filesystem).
    path = cache_dir() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _SKIP or n.endswith((".pyc", ".pyo"))}


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
