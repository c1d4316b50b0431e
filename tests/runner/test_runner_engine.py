"""The engine's own isolation layers as the docker backend reads them from ``docker info``: seccomp, user-namespace
remapping (whose host ids the group's writable dirs are handed to) and the OCI runtime ``runner.runtime`` names.
Without an engine: ``docker info`` shapes of Docker 20.10–27 (the live checks are in test_runner_docker_live)."""

from __future__ import annotations

import logging

import pytest

from services.runner.config import RunnerConfig
from services.runner.policy import policy_from_config
from services.runner.sandbox.base import SandboxUnavailable
from services.runner.sandbox.docker import DockerBackend, docker_argv
from services.runner.sandbox.engine import EngineSecurity
from tests.runner.test_runner_argv import flag_value, spec

PLAIN = {"SecurityOptions": ["name=seccomp,profile=default"], "DockerRootDir": "/var/lib/docker",
         "Runtimes": {"runc": {"path": "runc"}, "io.containerd.runc.v2": {"path": "runc"}}, "DefaultRuntime": "runc"}
REMAPPED = {"SecurityOptions": ["name=apparmor", "name=seccomp,profile=builtin", "name=userns"],
            "DockerRootDir": "/var/lib/docker/231072.231072", "DefaultRuntime": "runc",
            "Runtimes": {"runc": {"path": "runc"}, "runsc": {"path": "/usr/local/bin/runsc"}}}


def test_an_ordinary_engine_filters_syscalls_and_maps_no_ids() -> None:
    engine = EngineSecurity.from_info(PLAIN)
    assert (engine.seccomp, engine.seccomp_profile, engine.userns, engine.rootless) == (True, "default", False, False)
    assert engine.runtimes == {"runc", "io.containerd.runc.v2"} and engine.default_runtime == "runc"
    assert engine.host_ids(1000, 1000) == (1000, 1000)


def test_a_remapping_engine_shifts_the_sandbox_user_by_the_base_in_its_data_root() -> None:
    engine = EngineSecurity.from_info(REMAPPED)
    assert engine.userns and engine.userns_base == (231072, 231072) and engine.seccomp_profile == "builtin"
    assert engine.host_ids(1000, 1001) == (232072, 232073)
    unreadable = EngineSecurity.from_info({**REMAPPED, "DockerRootDir": "/srv/docker"})
    with pytest.raises(ValueError, match="does not end in <uid>.<gid>"):
        unreadable.host_ids(1000, 1000)


def test_engines_without_seccomp_or_with_the_old_bare_option_names_are_read_too() -> None:
    assert not EngineSecurity.from_info({"SecurityOptions": ["name=apparmor"]}).seccomp
    assert EngineSecurity.from_info({"SecurityOptions": ["seccomp", "apparmor"]}).seccomp  # API < 1.26
    assert EngineSecurity.from_info({"SecurityOptions": ["name=rootless", "name=seccomp,profile=default"]}).rootless
    assert not EngineSecurity.from_info({}).seccomp


def test_the_backend_hands_dirs_to_the_remapped_ids_and_warns_about_an_engine_without_seccomp(caplog) -> None:
    backend = DockerBackend(RunnerConfig(user="1000:1000"))
    assert backend.host_owner() == (1000, 1000)  # before the engine is known: runner.user as it is
    backend.engine = backend.check_engine(EngineSecurity.from_info(REMAPPED))
    assert backend.host_owner() == (232072, 232072)
    with caplog.at_level(logging.WARNING):
        backend.check_engine(EngineSecurity.from_info({**PLAIN, "SecurityOptions": []}))
    assert "applies no seccomp profile" in caplog.text
    with pytest.raises(SandboxUnavailable, match="cannot tell which host ids"):
        backend.check_engine(EngineSecurity.from_info({**REMAPPED, "DockerRootDir": "/srv/docker"}))


def test_a_runtime_the_engine_does_not_know_stops_the_runner_naming_the_ones_it_has() -> None:
    backend = DockerBackend(RunnerConfig(runtime="runsc"))
    with pytest.raises(SandboxUnavailable, match=r"runner.runtime 'runsc' is not a runtime of this docker engine "
                                                 r"\(it has: io.containerd.runc.v2, runc\)"):
        backend.check_engine(EngineSecurity.from_info(PLAIN))
    assert backend.check_engine(EngineSecurity.from_info(REMAPPED)).runtimes >= {"runsc"}


def test_the_runtime_is_passed_only_when_configured_and_only_for_docker() -> None:
    assert flag_value(docker_argv(spec(), policy_from_config(RunnerConfig())), "--runtime") == []
    argv = docker_argv(spec(), policy_from_config(RunnerConfig(runtime="runsc")))
    assert flag_value(argv, "--runtime") == ["runsc"]
    for backend in ("process", "apple-container"):
        with pytest.raises(ValueError, match="runtime is a docker setting"):
            RunnerConfig(backend=backend, runtime="runsc")
    with pytest.raises(ValueError):
        RunnerConfig(runtime="runsc --privileged")


def test_the_argv_never_weakens_seccomp_or_user_namespaces() -> None:
    argv = docker_argv(spec(), policy_from_config(RunnerConfig(runtime="runc")))
    assert not [a for a in argv if "seccomp" in a or "apparmor" in a or a.startswith(("--userns", "--privileged"))]
    assert flag_value(argv, "--security-opt") == ["no-new-privileges"]
