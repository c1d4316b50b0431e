"""Image machinery (deploy/images) and the agent sandbox image: base fallback decisions, content hashing,
cached no-op rebuilds, and what the built agent image contains. Engine tests FAIL without Docker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

import pytest

from deploy.images import DockerUnavailable, ImageError, docker_client as connect
from deploy.images.base import BASE_IMAGE as LOCAL_BASE
from deploy.images.build import DEFAULT_BASE, assemble, build_image, context_hash, resolve_base_image
from deploy.images.wheelhouse import ensure_wheelhouse, missing_wheels, pin, target_platforms
from sandbox.image import IMAGE_NAME, REQUIREMENTS, build_agent_image_result
from tests.docker_support import agent_image, agent_image_result, base_image, docker_client

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "sandbox" / "Dockerfile"
VENV_PY = "/opt/venv/bin/python"


def run_in(image: str, entrypoint: str, *args: str) -> str:
    """stdout of a throwaway container with no network (ContainerError, with stderr, on a non-zero exit)."""
    out = docker_client().containers.run(image, list(args), entrypoint=[entrypoint], network_mode="none",
                                         remove=True, stdout=True, stderr=False)
    return out.decode().strip()


class FakeEngine:
    """Records what ``resolve_base_image`` asks of the engine."""

    def __init__(self, present=(), pull_error: str | None = "no such host"):
        self.present, self.pull_error = set(present), pull_error
        self.pulled, self.local_built, self.lines = [], 0, []

    def resolve(self, wanted):
        return resolve_base_image(wanted, present=lambda r: r in self.present, pull=self.pull,
                                  make_local=self.make_local, progress=self.lines.append)

    def pull(self, ref):
        self.pulled.append(ref)
        return self.pull_error

    def make_local(self):
        self.local_built += 1


# --- BASE_IMAGE decision (no engine) -------------------------------------------------------------------

def test_default_base_present_is_used_without_pulling():
    engine = FakeEngine(present={DEFAULT_BASE})
    assert engine.resolve(None) == DEFAULT_BASE
    assert engine.pulled == [] and engine.local_built == 0


def test_default_base_is_pulled_when_absent_and_pullable():
    engine = FakeEngine(pull_error=None)
    assert engine.resolve(None) == DEFAULT_BASE
    assert engine.pulled == [DEFAULT_BASE] and engine.local_built == 0


def test_default_base_unpullable_falls_back_to_the_local_base_and_says_so():
    engine = FakeEngine(pull_error="dial tcp: no such host")
    assert engine.resolve(None) == LOCAL_BASE
    assert engine.local_built == 1
    assert any("no such host" in line and LOCAL_BASE in line for line in engine.lines)


def test_an_explicit_base_never_falls_back():
    engine = FakeEngine(pull_error="denied")
    with pytest.raises(ImageError, match="example/base:1.*denied"):
        engine.resolve("example/base:1")
    assert engine.local_built == 0


def test_asking_for_the_local_base_builds_it_without_pulling():
    engine = FakeEngine()
    assert engine.resolve(LOCAL_BASE) == LOCAL_BASE
    assert engine.pulled == [] and engine.local_built == 1


# --- static checks and pure helpers ---------------------------------------------------------------------

def test_dockerfile_is_legacy_builder_compatible():
    text = DOCKERFILE.read_text()
    assert not re.search(r"^\s*#\s*syntax\s*=", text, re.I | re.M)
    assert not re.search(r"^\s*RUN\s+--mount", text, re.I | re.M)
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text and "FROM ${BASE_IMAGE}" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/python", "-m", "sandbox.agent"]' in text


def test_context_hash_follows_content_paths_and_extras(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    src = tmp_path / "pkg"
    (src / "__pycache__").mkdir(parents=True)
    (src / "m.py").write_text("x = 1\n")
    (src / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"junk")
    assemble({"Dockerfile": "FROM x\n", "pkg": src}, a)
    assemble({"Dockerfile": "FROM x\n", "pkg": src}, b)
    assert not (a / "pkg" / "__pycache__").exists()
    assert context_hash(a) == context_hash(b)
    assert context_hash(a, {"arg:BASE_IMAGE": "one"}) != context_hash(a, {"arg:BASE_IMAGE": "two"})
    (b / "pkg" / "m.py").unlink()
    (b / "pkg" / "m.py").write_text("x = 2\n")  # unlink first: the file may be a hard link to the source
    assert context_hash(a) != context_hash(b)
    assert (src / "m.py").read_text() == "x = 1\n"


def test_pins_are_the_venv_versions_and_unknown_packages_are_refused():
    assert pin(["claude-agent-sdk", "nats-py[nkeys]"]) == [
        f"claude-agent-sdk=={metadata.version('claude-agent-sdk')}", f"nats-py[nkeys]=={metadata.version('nats-py')}"]
    with pytest.raises(ImageError, match="not-a-real-package-xyz is not installed"):
        pin(["not-a-real-package-xyz"])
    assert target_platforms("x86_64")[:2] == ["manylinux2014_x86_64", "manylinux_2_17_x86_64"]


def test_sdist_only_dependencies_are_recognised_in_pip_output():
    conflict = ("ERROR: Cannot install nats-py[nkeys]==2.16.0 because …\nAdditionally, some packages in these "
                "conflicts have no matching distributions available for your environment:\n    nkeys\n\nTo fix")
    assert missing_wheels(conflict) == {"nkeys"}
    assert missing_wheels("ERROR: No matching distribution found for Foo_Bar==1.0") == {"foo-bar"}
    assert missing_wheels("ERROR: HTTP error 503") == set()


def test_no_engine_is_a_clear_error_naming_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    with pytest.raises(DockerUnavailable, match=r"no Docker engine reachable \(DOCKER_HOST=tcp://127.0.0.1:1\)"):
        connect(timeout=5)


def test_cli_without_an_engine_exits_1_with_one_clear_line():
    proc = subprocess.run([sys.executable, "-m", "services.cli.main", "sandbox", "build"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "DOCKER_HOST": "tcp://127.0.0.1:1",
                               "COLUMNS": "200"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "no Docker engine reachable (DOCKER_HOST=tcp://127.0.0.1:1)" in proc.stderr


# --- against the engine ---------------------------------------------------------------------------------

@pytest.mark.docker
def test_generic_build_then_unchanged_rebuild_is_a_noop(monkeypatch):
    client = docker_client()
    files = {"Dockerfile": f"FROM {base_image()}\nCOPY hello.txt /hello.txt\n", "hello.txt": uuid.uuid4().hex}
    first = build_image(client, "nanoclaw-test-tiny", files)
    try:
        monkeypatch.setattr(client.api, "build", lambda *a, **k: pytest.fail("docker build was called"))
        again = build_image(client, "nanoclaw-test-tiny", files)
        assert (first.status, again.status) == ("built", "cached")
        assert again.tag == first.tag and again.image_id == first.image_id
        assert client.images.get("nanoclaw-test-tiny:latest").id == first.image_id
    finally:
        monkeypatch.undo()
        client.images.remove(first.tag, force=True)
        client.images.remove(first.latest, force=True)


@pytest.mark.docker
def test_a_failing_build_names_the_step():
    with pytest.raises(ImageError, match=r"build nanoclaw-test-fail: Step 2/2 : RUN echo about to fail && false "
                                         r"failed: .*non-zero code"):
        build_image(docker_client(), "nanoclaw-test-fail",
                    {"Dockerfile": f"FROM {base_image()}\nRUN echo about to fail && false\n", "n": uuid.uuid4().hex})


@pytest.mark.docker
def test_the_agent_image_builds_and_an_unchanged_rebuild_is_a_noop(monkeypatch):
    first = agent_image_result()
    assert first.tag.startswith(f"{IMAGE_NAME}:") and first.status in {"built", "cached"}
    client = docker_client()
    monkeypatch.setattr(client.api, "build", lambda *a, **k: pytest.fail("docker build was called"))
    again = build_agent_image_result(client=client)
    assert (again.status, again.tag, again.image_id) == ("cached", first.tag, first.image_id)
    assert client.images.get(f"{IMAGE_NAME}:latest").id == first.image_id


@pytest.mark.docker
def test_the_agent_image_runs_as_uid_1000_under_tini_in_the_workspace():
    image = docker_client().images.get(agent_image())
    config = image.attrs["Config"]
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", VENV_PY, "-m", "sandbox.agent"]
    assert config["User"] == "1000:1000" and config["WorkingDir"] == "/workspace/group"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["HOME"] == "/home/agent" and env["PYTHONPATH"] == "/opt/nanoclaw"
    assert {env[k] for k in ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_TELEMETRY",
                             "DISABLE_ERROR_REPORTING", "DISABLE_AUTOUPDATER")} == {"1"}
    assert env["ENABLE_TOOL_SEARCH"] == "false"
    probe = "import os; print(os.getuid(), os.getgid(), os.getcwd(), open('/proc/1/cmdline').read().split(chr(0))[0])"
    assert run_in(agent_image(), "/usr/bin/tini", "--", VENV_PY, "-c", probe) == "1000 1000 /workspace/group /usr/bin/tini"


@pytest.mark.docker
def test_the_agent_image_has_the_sdk_with_its_bundled_cli_and_nats():
    probe = ("import json, claude_agent_sdk, nats, nkeys, sandbox.agent, importlib.metadata as m, pathlib; "
             "cli = pathlib.Path(claude_agent_sdk.__file__).parent / '_bundled' / 'claude'; "
             "print(json.dumps({'cli': str(cli), 'versions': {n: m.version(n) for n in "
             "('claude-agent-sdk', 'nats-py', 'nkeys')}}))")
    found = json.loads(run_in(agent_image(), VENV_PY, "-c", probe))
    assert found["versions"] == {n: metadata.version(n) for n in ("claude-agent-sdk", "nats-py", "nkeys")}
    host_cli = Path(__import__("claude_agent_sdk").__file__).parent / "_bundled" / "claude.version"
    assert run_in(agent_image(), found["cli"], "--version") == host_cli.read_text().strip()


def test_the_wheelhouse_pins_equal_the_venv_versions():
    house = ensure_wheelhouse(REQUIREMENTS)
    assert list(house.requirements) == pin(REQUIREMENTS)
    for dist in ("claude-agent-sdk", "nats-py", "nkeys"):
        prefix = f"{dist.replace('-', '_')}-{metadata.version(dist)}-"
        assert any(f.startswith(prefix) for f in house.files), (prefix, house.files)
