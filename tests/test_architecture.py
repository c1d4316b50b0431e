"""Structural rules: services never import each other; only events/, projections/ (machinery) and the service
harness are shared; the event layer depends on nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = {"events", "projections", "services.harness"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def ours(module: str) -> bool:
    return module.split(".")[0] in {"events", "projections", "services", "sandbox"}


def service_packages() -> list[Path]:
    return [p for p in (ROOT / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()
            and p.name not in {"harness", "cli"}]


def test_a_service_imports_only_itself_events_projections_and_the_harness():
    problems = []
    for pkg in service_packages():
        own = f"services.{pkg.name}"
        for file in pkg.rglob("*.py"):
            for mod in imports(file):
                if ours(mod) and not (mod == own or mod.startswith(own + ".") or any(
                        mod == s or mod.startswith(s + ".") for s in SHARED)):
                    problems.append(f"{file.relative_to(ROOT)} imports {mod}")
    assert problems == []


def test_the_event_layer_and_projections_do_not_depend_on_services():
    problems = []
    for top in ("events", "projections"):
        for file in (ROOT / top).rglob("*.py"):
            for mod in imports(file):
                if mod.startswith("services") or (top == "events" and mod.startswith("projections")):
                    problems.append(f"{file.relative_to(ROOT)} imports {mod}")
    assert problems == []


def test_the_harness_imports_no_service():
    problems = [f"{f.relative_to(ROOT)} imports {m}" for f in (ROOT / "services" / "harness").rglob("*.py")
                for m in imports(f) if m.startswith("services.") and not m.startswith("services.harness")]
    assert problems == []


def test_there_are_service_packages_to_check():
    assert {p.name for p in service_packages()} >= {"projector"}
