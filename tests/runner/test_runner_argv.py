"""Sandbox argv and management, without an engine: docker_argv (every hardening flag), the policy's
invariants, apple_argv and its list parsing, stop/orphans with a fake executor or a fake docker-py client
(v1 container-runtime.test.ts scenarios)."""

from __future__ import annotations

import dataclasses
import logging

import docker
import docker.errors
import pytest
import requests
from pydantic import ValidationError

from services.runner.config import RunnerConfig
from services.runner.policy import SandboxPolicy, policy_from_config
from services.runner.sandbox.apple import AppleContainerBackend, apple_argv, parse_container_list
from services.runner.sandbox.base import (RUNTIME_REQUIRED, CommandResult, Limits, Mount, SandboxError, SandboxSpec,
                                          SandboxUnavailable, container_name)
from services.runner.sandbox.docker import DockerBackend, _stop_and_remove, docker_argv, gateway_ip, init_available
from tests.runner.conftest import FakeExecutor

BAD_NAMES = ["nanoclaw-x; rm -rf /", "nanoclaw-$(whoami)", "nanoclaw-`id`", "a b", "", "-flag", "x|y", "x&y", "x\ny"]


def spec(**kw) -> SandboxSpec:
    base = dict(name="nanoclaw-family-1700000000000", image="nanoclaw-agent:latest",
                mounts=[Mount("/data/groups/family", "/workspace/group", read_only=False),
                        Mount("/data/groups/global", "/workspace/global", read_only=True)],
                env={"TZ": "Europe/Berlin"}, labels={"nanoclaw.run_id": "r1", "nanoclaw.group": "family"})
    return SandboxSpec(**{**base, **kw})


def flag_value(argv: list[str], flag: str) -> list[str]:
    """Values of ``flag`` given as ``--flag=v`` or ``--flag v``."""
    out = [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]
    out += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]
    return out


def test_docker_argv_pins_every_hardening_flag() -> None:
    argv = docker_argv(spec(), policy_from_config(RunnerConfig()))
    assert argv[:7] == ["docker", "run", "-i", "--rm", "--name", "nanoclaw-family-1700000000000", "--pull=never"]
    assert "--read-only" in argv
    assert flag_value(argv, "--cap-drop") == ["ALL"]
    assert flag_value(argv, "--security-opt") == ["no-new-privileges"]
    assert flag_value(argv, "--user") == ["1000:1000"]
    assert flag_value(argv, "--pids-limit") == ["256"]
    assert flag_value(argv, "--memory") == ["1g"] and flag_value(argv, "--memory-swap") == ["1g"]
    assert flag_value(argv, "--cpus") == ["1"]
    assert flag_value(argv, "--tmpfs") == ["/tmp:rw,noexec,nosuid,nodev,mode=1777,size=64m"]
    assert "--init" in argv
    assert flag_value(argv, "--network") == ["nanoclaw-sandbox"]
    assert flag_value(argv, "--log-driver") == ["none"]
    assert sorted(flag_value(argv, "--label")) == ["nanoclaw.group=family", "nanoclaw.network=nanoclaw-sandbox",
                                                   "nanoclaw.role=agent", "nanoclaw.run_id=r1"]
    assert flag_value(argv, "-e") == ["TZ=Europe/Berlin"]
    assert flag_value(argv, "-w") == ["/workspace/group"]
    assert flag_value(argv, "--mount") == ["type=bind,source=/data/groups/family,target=/workspace/group",
                                           "type=bind,source=/data/groups/global,target=/workspace/global,readonly"]
    assert argv[-1] == "nanoclaw-agent:latest"
    assert not any(a in argv for a in ("--privileged", "-v", "--cap-add", "--network=host", "--pid=host"))


def test_docker_argv_takes_limits_from_config_and_appends_the_command() -> None:
    cfg = RunnerConfig(memory="512m", cpus=0.5, pids_limit=64, tmp_size="16m", user="1234:1234", network="n1")
    argv = docker_argv(spec(command=["python3", "-c", "print(1)"]), policy_from_config(cfg))
    assert flag_value(argv, "--memory") == ["512m"] and flag_value(argv, "--memory-swap") == ["512m"]
    assert flag_value(argv, "--cpus") == ["0.5"] and flag_value(argv, "--pids-limit") == ["64"]
    assert flag_value(argv, "--tmpfs") == ["/tmp:rw,noexec,nosuid,nodev,mode=1777,size=16m"]
    assert flag_value(argv, "--user") == ["1234:1234"] and flag_value(argv, "--network") == ["n1"]
    assert argv[-4:] == ["nanoclaw-agent:latest", "python3", "-c", "print(1)"]


def test_a_spec_cannot_override_the_role_label_or_run_as_root() -> None:
    with pytest.raises(ValueError, match="set by the backend"):
        spec(labels={"nanoclaw.role": "not-agent"})
    with pytest.raises(ValueError, match="root"):
        docker_argv(spec(user="0:0"), policy_from_config(RunnerConfig()))


@pytest.mark.parametrize("changes", [dict(read_only_root=False), dict(cap_drop=("NET_RAW",)),
                                     dict(no_new_privileges=False), dict(user="0"), dict(user="root"),
                                     dict(tmpfs={"/home/agent": "rw"}), dict(tmpfs={"/home/agent/.cache": "rw"}),
                                     dict(tmpfs={"/": "rw"}), dict(labels={"nanoclaw.role": "x"})])
def test_the_policy_refuses_to_weaken_the_hardening(changes) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(SandboxPolicy(network="n"), **changes)


def test_config_refuses_root_bad_subnets_and_sizes_and_computes_the_hard_timeout() -> None:
    for bad in (dict(user="0:0"), dict(network_subnet="172.29.0.1/24"), dict(network_subnet="10.0.0.0/31"),
                dict(memory="lots"), dict(backend="podman"), dict(unknown=1)):
        with pytest.raises(ValueError):
            RunnerConfig(**bad)
    cfg = RunnerConfig()
    assert cfg.hard_timeout_ms() == 1_830_000  # v1 §19: max(30 min, 30 min + 30 s)
    assert cfg.hard_timeout_ms({"timeout": 3_600_000}) == 3_600_000
    assert cfg.hard_timeout_ms({"timeout": 60_000}) == 1_830_000
    assert RunnerConfig(timeout_ms=5).hard_timeout_ms(idle_timeout_ms=0) == 30_000  # the queue's idle timeout
    assert gateway_ip(cfg) == "172.29.0.1" and gateway_ip(RunnerConfig(network_subnet="10.9.8.0/24")) == "10.9.8.1"


def test_the_old_runner_idle_keys_name_their_new_place_in_the_queue_section() -> None:
    for key in ("idle_timeout_ms", "task_close_delay_ms"):
        with pytest.raises(ValidationError, match=f"runner.{key} moved to queue.{key}"):
            RunnerConfig.model_validate({key: 1000})


@pytest.mark.parametrize("endpoints", [{"nats_urls": []}, {"nats_urls": ["http://nats:4222"], "model_proxy_url": "http://b:1"},
                                       {"nats_urls": ["nats://a:1,nats://b:2"], "model_proxy_url": "http://b:1"},
                                       {"nats_urls": ["nats://a:1"], "model_proxy_url": "http://b:1/v1"}])
def test_given_sandbox_endpoints_must_be_nats_urls_and_a_proxy_origin(endpoints) -> None:
    with pytest.raises(ValueError):
        RunnerConfig(sandbox_endpoints=endpoints)


async def test_given_sandbox_endpoints_are_used_as_they_are_without_relays() -> None:
    from services.runner.service import _endpoints

    cfg = RunnerConfig(sandbox_endpoints={"nats_urls": ["nats://nats-1:4222", "nats://nats-2:4222"],
                                          "model_proxy_url": "http://broker:8788/"})
    relays: list = []
    endpoints = await _endpoints(cfg, None, None, relays)  # type: ignore[arg-type] — neither is consulted
    assert (endpoints.nats_url, endpoints.model_url) == ("nats://nats-1:4222,nats://nats-2:4222", "http://broker:8788")
    assert relays == []


def test_container_names_follow_v1_and_specs_refuse_secrets_and_unsafe_mounts() -> None:
    assert container_name("family_chat.x", 1700000000000) == "nanoclaw-family-chat-x-1700000000000"
    for key in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN", "DB_PASSWORD", "X_SECRET"):
        with pytest.raises(ValueError, match="credentials"):
            spec(env={key: "x"})
    assert spec(env={"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "8000"}).env  # a setting, not a credential
    for host, target in (("relative", "/x"), ("/a", "x"), ("/a:b", "/x"), ("/a,readonly=false", "/x"),
                         ("/a", "/x/../y")):
        with pytest.raises(ValueError):
            Mount(host, target)
    with pytest.raises(ValueError, match="share a container path"):
        spec(mounts=[Mount("/a", "/x"), Mount("/b", "/x")])
    for bad in BAD_NAMES:
        with pytest.raises(ValueError, match="Invalid container name"):
            spec(name=bad)


# --- stop, orphans, availability (docker) ---------------------------------------------------------------------

async def test_docker_stop_runs_docker_stop_with_the_grace_period() -> None:
    ex = FakeExecutor()
    await DockerBackend(RunnerConfig(), executor=ex).stop("nanoclaw-test-123", 1)
    assert ex.calls == [["docker", "stop", "-t", "1", "nanoclaw-test-123"]]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_stop_with_an_invalid_name_raises_and_executes_nothing(name: str) -> None:
    ex = FakeExecutor()
    for backend in (DockerBackend(RunnerConfig(), executor=ex), AppleContainerBackend(RunnerConfig(), executor=ex)):
        with pytest.raises(ValueError, match="Invalid container name"):
            await backend.stop(name, 1)
    assert ex.calls == []


async def test_docker_stop_falls_back_to_kill_and_accepts_a_gone_container() -> None:
    ex = FakeExecutor({("docker", "stop"): CommandResult(1, "", "Error: daemon timed out")})
    await DockerBackend(RunnerConfig(), executor=ex).stop("nanoclaw-a-1", 10)
    assert ex.calls == [["docker", "stop", "-t", "10", "nanoclaw-a-1"], ["docker", "kill", "nanoclaw-a-1"]]
    gone = FakeExecutor({("docker", "stop"): CommandResult(1, "", "Error: No such container: nanoclaw-a-1")})
    await DockerBackend(RunnerConfig(), executor=gone).stop("nanoclaw-a-1", 10)
    assert len(gone.calls) == 1
    broken = FakeExecutor({("docker",): CommandResult(1, "", "boom")})
    with pytest.raises(SandboxError, match="boom"):
        await DockerBackend(RunnerConfig(), executor=broken).stop("nanoclaw-a-1", 10)


class FakeContainer:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail, self.stopped, self.removed = name, fail, False, False

    def stop(self, timeout: int) -> None:
        if self.fail:
            raise docker.errors.APIError("stop failed")
        self.stopped = True

    def remove(self, force: bool) -> None:
        self.removed = True


class FakeClient:
    def __init__(self, containers: list[FakeContainer] | Exception) -> None:
        self._containers, self.filters = containers, []
        self.containers = self

    def list(self, all: bool, filters: dict, ignore_removed: bool = False) -> list[FakeContainer]:
        assert ignore_removed  # a container removed between list and inspect must not fail the clean-up
        self.filters.append(filters)
        if isinstance(self._containers, Exception):
            raise self._containers
        return self._containers


async def test_remove_orphans_stops_each_labelled_container_and_logs_the_count(caplog) -> None:
    a, b = FakeContainer("nanoclaw-a-1"), FakeContainer("nanoclaw-b-2")
    client = FakeClient([a, b])
    backend = DockerBackend(RunnerConfig(), client_factory=lambda: client, scope_label="nanoclaw.instance=home")
    with caplog.at_level(logging.INFO):
        assert await backend.remove_orphans() == ["nanoclaw-a-1", "nanoclaw-b-2"]
    assert a.stopped and a.removed and b.stopped and b.removed
    assert client.filters == [{"label": ["nanoclaw.role=agent", "nanoclaw.network=nanoclaw-sandbox",
                                         "nanoclaw.instance=home"]}]
    assert any("Stopped 2 orphaned" in r.getMessage() and "nanoclaw-a-1" in r.getMessage() for r in caplog.records)


async def test_remove_orphans_with_none_logs_nothing(caplog) -> None:
    with caplog.at_level(logging.INFO):
        assert await DockerBackend(RunnerConfig(), client_factory=lambda: FakeClient([])).remove_orphans() == []
    assert not [r for r in caplog.records if "orphan" in r.getMessage()]


async def test_remove_orphans_warns_when_listing_fails_and_continues_past_a_failing_stop(caplog) -> None:
    failing = DockerBackend(RunnerConfig(), client_factory=lambda: FakeClient(docker.errors.DockerException("down")))
    with caplog.at_level(logging.WARNING):
        assert await failing.remove_orphans() == []
    assert any("Failed to clean up orphaned containers" in r.getMessage() for r in caplog.records)
    bad, good = FakeContainer("nanoclaw-a-1", fail=True), FakeContainer("nanoclaw-b-2")
    backend = DockerBackend(RunnerConfig(), client_factory=lambda: FakeClient([bad, good]))
    assert await backend.remove_orphans() == ["nanoclaw-b-2"]
    assert good.removed and not bad.removed


async def test_ensure_available_without_an_engine_raises_v1s_message() -> None:
    # Both shapes of "no daemon" (stack-notes §3.4): a version probe that fails in the constructor
    # (DockerException), and a pinned API version whose first call fails (requests ConnectionError).
    factories = [lambda: docker.DockerClient(base_url="tcp://127.0.0.1:1", timeout=2),
                 lambda: docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41", timeout=2)]
    for factory in factories:
        with pytest.raises(SandboxUnavailable, match=RUNTIME_REQUIRED):
            await DockerBackend(RunnerConfig(), client_factory=factory).ensure_available()
    with pytest.raises(SandboxUnavailable, match="not found on PATH"):
        await DockerBackend(RunnerConfig(), docker_cli="no-such-docker-cli").ensure_available()


def test_init_detection_and_a_removal_already_in_progress() -> None:
    assert init_available({"InitBinary": "docker-init", "InitCommit": {"ID": ""}})  # 20.10 + Debian tini
    assert init_available({"InitBinary": "docker-init", "InitCommit": {"ID": "de40ad0"}})
    assert not init_available({"InitBinary": "docker-init", "InitCommit": {"ID": "N/A"}})
    assert not init_available({"InitBinary": ""})

    class Racing(FakeContainer):
        def remove(self, force: bool) -> None:
            response = requests.Response()
            response.status_code, response.reason, response.url = 409, "Conflict", "http+docker://localhost/x"
            raise docker.errors.APIError("409", response=response,
                                         explanation="removal of container x is already in progress")
    _stop_and_remove(Racing("nanoclaw-a-1"))  # --rm got there first: fine


# --- Apple Container --------------------------------------------------------------------------------------------

def test_apple_argv_uses_container_run_with_readonly_mounts_and_no_docker_hardening_flags() -> None:
    argv = apple_argv(spec(user="1000:1000", limits=Limits(memory="1g", cpus=2)))
    assert argv[:6] == ["container", "run", "-i", "--rm", "--name", "nanoclaw-family-1700000000000"]
    assert flag_value(argv, "--mount") == ["type=bind,source=/data/groups/global,target=/workspace/global,readonly"]
    assert flag_value(argv, "-v") == ["/data/groups/family:/workspace/group"]
    assert flag_value(argv, "--user") == ["1000:1000"]
    assert flag_value(argv, "--cpus") == ["2"] and flag_value(argv, "--memory") == ["1G"]
    assert sorted(flag_value(argv, "-l")) == ["nanoclaw.group=family", "nanoclaw.role=agent", "nanoclaw.run_id=r1"]
    assert flag_value(argv, "-e") == ["TZ=Europe/Berlin"] and argv[-1] == "nanoclaw-agent:latest"
    for flag in ("--read-only", "--cap-drop", "--security-opt", "--pids-limit", "--init", "--tmpfs"):
        assert not any(a.startswith(flag) for a in argv)


LS_JSON = """[{"status":"running","configuration":{"id":"nanoclaw-family-1","labels":{"nanoclaw.role":"agent"}}},
 {"status":"stopped","configuration":{"id":"nanoclaw-old-2"}},
 {"status":"running","configuration":{"id":"other-thing"}}, {"status":"running"}]"""


def test_apple_container_list_parsing() -> None:
    assert parse_container_list(LS_JSON) == [
        {"name": "nanoclaw-family-1", "status": "running", "labels": {"nanoclaw.role": "agent"}},
        {"name": "nanoclaw-old-2", "status": "stopped", "labels": {}},
        {"name": "other-thing", "status": "running", "labels": {}}]
    assert parse_container_list("") == []
    with pytest.raises(ValueError):
        parse_container_list('{"not": "a list"}')


async def test_apple_orphans_stop_running_nanoclaw_containers_and_a_failing_stop_does_not_stop_the_others() -> None:
    ls = """[{"status":"running","configuration":{"id":"nanoclaw-a-1"}},
                        {"status":"running","configuration":{"id":"nanoclaw-b-2"}}]"""
    ex = FakeExecutor({("container", "ls"): CommandResult(0, ls, ""),
                       ("container", "stop", "-t", "1", "nanoclaw-a-1"): CommandResult(1, "", "busy"),
                       ("container", "kill", "nanoclaw-a-1"): CommandResult(1, "", "still busy")})
    assert await AppleContainerBackend(executor=ex).remove_orphans() == ["nanoclaw-b-2"]
    assert ["container", "ls", "--format", "json"] in ex.calls
    assert ["container", "stop", "-t", "1", "nanoclaw-b-2"] in ex.calls
    labelled = FakeExecutor({("container", "ls"): CommandResult(0, LS_JSON, "")})
    assert await AppleContainerBackend(executor=labelled).list_names("nanoclaw.role=agent") == ["nanoclaw-family-1"]
    assert labelled.calls == [["container", "ls", "-a", "--format", "json"]]


async def test_apple_ensure_available_starts_the_system_once_then_reports_v1s_message() -> None:
    ok = FakeExecutor()
    await AppleContainerBackend(executor=ok).ensure_available()
    assert ok.calls == [["container", "system", "status"]]
    down = FakeExecutor({("container", "system", "status"): CommandResult(1, "", "apiserver is not running")})
    with pytest.raises(SandboxUnavailable, match=f"{RUNTIME_REQUIRED}: apiserver is not running"):
        await AppleContainerBackend(executor=down).ensure_available()
    assert down.calls == [["container", "system", "status"], ["container", "system", "start"],
                          ["container", "system", "status"]]
    missing = FakeExecutor({("container",): FileNotFoundError("container")})
    with pytest.raises(SandboxUnavailable, match=RUNTIME_REQUIRED):
        await AppleContainerBackend(executor=missing).ensure_available()
