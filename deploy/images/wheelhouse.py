"""A host-side wheelhouse: the image's Python requirements, pinned to the versions installed in the running
venv, downloaded as Linux wheels on the host (which trusts its own CA bundle) so ``docker build`` needs no
network (stack notes §4.4).

Layout: ``<cache>/wheelhouse/<key>/`` holding ``*.whl``, ``requirements.txt`` (the pins) and ``manifest.json``
(written last: its presence marks a complete set). ``key`` = sha256 of pins + constraints + target, so a
changed venv gives a new set and an unchanged one is reused **without touching the network**.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from deploy.images import ImageError, Progress, cache_dir, no_progress

# Both bases run CPython 3.11: Debian bookworm's python3 is 3.11.2, python:3.11-slim-bookworm a later 3.11.x;
# resolving for the lower one keeps every wheel installable on both (pip reads "3.11" as 3.11.0).
PYTHON = "3.11.2"
# Bookworm has glibc 2.36, so every manylinux tag up to 2_36 runs there; pip does not expand manylinux_X_Y
# downwards by itself, so the tags are listed (manylinux2014 == manylinux_2_17, and pip adds 2010/1 to it).
GLIBC_MINORS = range(17, 37)


@dataclass(frozen=True)
class Wheelhouse:
    """A complete wheel set: ``path`` (directory), ``requirements`` (``name[extras]==version`` lines),
    ``files`` (wheel file names), ``status`` (``"cached"`` or ``"downloaded"``)."""

    path: Path
    requirements: tuple[str, ...]
    files: tuple[str, ...]
    status: str


def pin(requirements: list[str]) -> list[str]:
    """``["nats-py[nkeys]"]`` → ``["nats-py[nkeys]==2.16.0"]``: the version installed in this venv.

    Errors: ``ImageError`` naming a requirement that is not installed here (the image would get an untested
    version otherwise).
    """
    pinned = []
    for req in requirements:
        name = re.split(r"[\[=<>!~; ]", req, maxsplit=1)[0]
        try:
            pinned.append(f"{req.split('==')[0].strip()}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise ImageError(f"wheelhouse: {name} is not installed in {sys.prefix}; install it to pin its version") from None
    return pinned


def venv_constraints() -> list[str]:
    """``name==version`` for every distribution in this venv, so transitive dependencies also match what
    the host's tests ran with (pip ignores constraints for packages it does not need)."""
    found = {}
    # Only site-packages: sys.path may also hold a source tree's *.egg-info, which would make the key (and so
    # the cache hit) depend on the working directory.
    site = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    for dist in metadata.distributions(path=site):
        name = dist.metadata["Name"]
        # Editable installs (our own project) have no wheel on PyPI and are never a dependency of the image.
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        if name and not direct.get("dir_info", {}).get("editable"):
            found[_canonical(name)] = f"{name}=={dist.version}"
    return sorted(found.values())


def target_platforms(machine: str | None = None) -> list[str]:
    """pip ``--platform`` values for the image's architecture (the host's: images are built for it)."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine or platform.machine(), machine or platform.machine())
    return [f"manylinux2014_{arch}"] + [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]


def ensure_wheelhouse(requirements: list[str], progress: Progress = no_progress, *, root: Path | None = None,
                      machine: str | None = None) -> Wheelhouse:
    """Download (or reuse) the wheels for ``requirements`` (unpinned names; pinned here via ``pin``).

    Errors: ``ImageError("wheelhouse: …")`` with pip's output tail (no wheel for the platform, no network, …).
    """
    pins = pin(requirements)
    constraints = venv_constraints()
    platforms = target_platforms(machine)
    key = hashlib.sha256(json.dumps([pins, constraints, platforms, PYTHON]).encode()).hexdigest()[:16]
    root = root or cache_dir() / "wheelhouse"
    dest = root / key
    manifest = dest / "manifest.json"
    if manifest.exists():
        files = tuple(json.loads(manifest.read_text())["files"])
        progress(f"wheelhouse: reusing {len(files)} wheels in {dest}")
        return Wheelhouse(dest, tuple(pins), files, "cached")
    partial = root / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "requirements.txt").write_text("\n".join(pins) + "\n")
    (partial / "constraints.txt").write_text("\n".join(constraints) + "\n")
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
            "--python-version", PYTHON, "--implementation", "cp", "--abi", "cp" + "".join(PYTHON.split(".")[:2]),
            "--abi", "abi3", "--abi", "none", *(a for p in platforms for a in ("--platform", p)),
            "-d", str(partial), "-r", str(partial / "requirements.txt"), "-c", str(partial / "constraints.txt")]
    # Earlier sets hold most wheels already (e.g. shared by the agent and service images): copy, don't download.
    for other in sorted(p for p in root.glob("*/manifest.json")):
        argv += ["--find-links", str(other.parent)]
    progress(f"wheelhouse: pip download {' '.join(pins)}")
    built: set[str] = set()
    while (missing := _pip_relaxing(argv, partial / "constraints.txt", constraints, progress)) and not missing <= built:
        # Some dependencies publish only an sdist (nkeys 0.2.1): build those wheels here, where a build is
        # possible, then resolve again finding them in ``partial``. Only pure-Python results are acceptable.
        for name in sorted(missing - built):
            _build_pure_wheel(_constraint_for(name, constraints), partial, progress)
        if not built:
            argv += ["--find-links", str(partial)]
        built |= missing
    if missing:
        raise ImageError(f"wheelhouse: no wheel for {', '.join(sorted(missing))} even after building it on the host")
    files = tuple(sorted(p.name for p in partial.glob("*.whl")))
    (partial / "manifest.json").write_text(json.dumps({"requirements": pins, "platforms": platforms,
                                                       "python": PYTHON, "files": files}, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return Wheelhouse(dest, tuple(pins), files, "downloaded")


class _WrongPython(Exception):
    """pip refused a pinned version because it needs a newer Python than the image's."""


_WRONG_PYTHON = re.compile(r"Package '([^']+)' requires a different Python")


def _pip_relaxing(argv: list[str], constraints_file: Path, constraints: list[str], progress: Progress) -> set[str]:
    """``_pip``, dropping the venv's pin of a transitive dependency whose pinned version needs a newer Python
    than the images have (the host venv may run 3.11.7, Debian bookworm has 3.11.2): pip then picks the newest
    version that installs there. Top-level requirements stay pinned (a mismatch there is an error)."""
    while True:
        try:
            return _pip(argv, progress)
        except _WrongPython as exc:
            name = _canonical(str(exc))
            kept = [c for c in constraints if _canonical(c.split("==")[0]) != name]
            if len(kept) == len(constraints):
                raise ImageError(f"wheelhouse: {exc} needs a newer Python than {PYTHON} and is not relaxable") from None
            progress(f"wheelhouse: {exc}: the venv's version needs a newer Python than {PYTHON}; letting pip choose")
            constraints[:] = kept
            constraints_file.write_text("\n".join(kept) + "\n")


# pip's two ways of saying "no wheel of X for this platform": a plain miss, and a miss inside a conflict report.
_NO_MATCH = re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)")
_NO_MATCH_BLOCK = re.compile(r"no matching distributions available for your environment:\n((?:\s{4,}\S+\n?)+)")


def _pip(argv: list[str], progress: Progress) -> set[str]:
    """Run pip; ``set()`` on success, the canonical names pip found no wheel for when that is why it failed.
    Errors: ``ImageError`` with pip's output tail for any other failure."""
    lines: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            lines.append(line)
            progress(f"wheelhouse: {line}")
    if proc.wait() == 0:
        return set()
    missing = missing_wheels("\n".join(lines))
    if missing:
        return missing
    wrong = _WRONG_PYTHON.search("\n".join(lines))
    if wrong:
        raise _WrongPython(wrong.group(1))
    raise ImageError(f"wheelhouse: pip {argv[3]} exited {proc.returncode}:\n" + "\n".join(lines[-15:]))


def missing_wheels(pip_output: str) -> set[str]:
    """Canonical names pip reported "no matching distribution" for (empty: failed for another reason)."""
    missing = {_canonical(m) for m in _NO_MATCH.findall(pip_output)}
    for block in _NO_MATCH_BLOCK.findall(pip_output):
        missing |= {_canonical(n) for n in block.split()}
    return missing


def _constraint_for(name: str, constraints: list[str]) -> str:
    """The venv's ``name==version`` for a canonical name (plain ``name`` when the venv does not have it)."""
    return next((c for c in constraints if _canonical(c.split("==")[0]) == name), name)


def _build_pure_wheel(requirement: str, dest: Path, progress: Progress) -> None:
    """``pip wheel --no-deps`` one sdist into ``dest``; ``ImageError`` unless the result is ``*-none-any``
    (a compiled wheel built here would be for the host, not necessarily for the image)."""
    progress(f"wheelhouse: {requirement} has no published wheel; building it on the host")
    before = set(dest.glob("*.whl"))
    if _pip([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-w", str(dest),
             requirement], progress):
        raise ImageError(f"wheelhouse: {requirement} is not on the index")
    for wheel in set(dest.glob("*.whl")) - before:
        if not wheel.name.endswith("-none-any.whl"):
            wheel.unlink()
            raise ImageError(f"wheelhouse: {requirement} publishes no Linux wheel and is not pure Python ({wheel.name})")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
