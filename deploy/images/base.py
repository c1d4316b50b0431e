"""The local base image ``nanoclaw-base:bookworm``: Debian bookworm built with debootstrap on the host and
imported into the engine, for engines that cannot pull (stack notes §4.1, §4.2).

Cached twice: the image (skip everything when the tag exists) and the rootfs tarball
``<cache>/base/bookworm-rootfs.tar`` (skip debootstrap when present; delete it to force a fresh rootfs).
Needs root and ``debootstrap`` on the host. Measured (2 cores): debootstrap + prune + tar ≈50 s, import ≈3 s;
the image is ≈206 MB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker

from deploy.images import DOCKER_DOWN, DockerUnavailable, ImageError, Progress, cache_dir, image_exists, no_progress

BASE_IMAGE = "nanoclaw-base:bookworm"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "tini", "git")
# Plain http: apt verifies signatures itself, and no TLS-intercepting proxy's CA is needed (stack notes §4.4).
MIRROR = os.environ.get("NANOCLAW_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CHANGES = ["ENV LANG=C.UTF-8",
           "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           'CMD ["/bin/bash"]']
# Space, not function: caches and docs are ≈130 MB of the 275 MB raw rootfs.
PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
         "usr/share/info", "var/log")


def rootfs_tarball(progress: Progress = no_progress) -> Path:
    """Path of the cached rootfs tarball, running debootstrap first when it is missing.

    Errors: ``ImageError("base: …")`` when not root, debootstrap is missing, or it fails (its log tail quoted).
    """
    tar = cache_dir() / "base" / f"{SUITE}-rootfs.tar"
    if tar.exists():
        progress(f"base: reusing rootfs tarball {tar}")
        return tar
    if os.geteuid() != 0:
        raise ImageError("base: debootstrap needs root (or pull python:3.11-slim-bookworm instead)")
    if not shutil.which("debootstrap"):
        raise ImageError("base: debootstrap is not installed (apt-get install debootstrap)")
    tar.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tar.parent))
    root = work / "rootfs"
    try:
        progress(f"base: debootstrap --variant=minbase {SUITE} from {MIRROR} (≈35 s)")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), MIRROR],
             progress, "debootstrap")
        for rel in PRUNE:
            target = root / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()  # apt and dpkg expect the directories to exist
        partial = tar.with_suffix(".tar.partial")
        progress(f"base: packing {tar.name}")
        # /dev, /proc, /sys contents: the engine provides them at run time; device nodes would only bloat the layer.
        _run(["tar", "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
              "-C", str(root), "-cf", str(partial), "."], progress, "tar")
        partial.rename(tar)  # atomic: an interrupted run never leaves a tarball that looks complete
        return tar
    finally:
        _remove_rootfs(root)
        shutil.rmtree(work, ignore_errors=True)


def ensure_base_image(client: docker.DockerClient, progress: Progress = no_progress, *, tag: str = BASE_IMAGE) -> str:
    """Make ``tag`` exist on the engine; return ``"cached"`` or ``"built"``.

    Errors: ``ImageError`` (step named), ``DockerUnavailable``.
    """
    if image_exists(client, tag):
        progress(f"base: {tag} present")
        return "cached"
    tar = rootfs_tarball(progress)
    repo, _, version = tag.partition(":")
    progress(f"base: docker import {tar.name} as {tag} (a few seconds)")
    try:
        client.api.import_image_from_file(str(tar), repository=repo, tag=version or "latest", changes=CHANGES)
    except docker.errors.APIError as exc:
        raise ImageError(f"base: docker import failed: {exc.explanation or exc}") from exc
    except DOCKER_DOWN as exc:
        raise DockerUnavailable(exc) from exc
    if not image_exists(client, tag):
        raise ImageError(f"base: docker import finished but {tag} is not on the engine")
    return "built"


def _run(argv: list[str], progress: Progress, step: str) -> None:
    """Run ``argv``, streaming its output lines to ``progress``; ``ImageError`` quoting the tail on failure."""
    tail: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-15:]
        progress(f"base: {line}")
    if proc.wait() != 0:
        raise ImageError(f"base: {step} exited {proc.returncode}:\n" + "\n".join(tail))


def _remove_rootfs(root: Path) -> None:
    """Delete a rootfs, first unmounting anything debootstrap left mounted inside (rmtree into a mounted /proc
    or /sys would walk the host's)."""
    if not root.exists():
        return
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(root, ignore_errors=True)
