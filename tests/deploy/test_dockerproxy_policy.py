"""The Docker API proxy's policy, pure: which calls pass, and which container bodies are refused, each refusal
naming its reason. The allowed body is the one the runner's real ``docker run`` sends (captured through the proxy:
docker CLI 28.2 against engine 20.10, ``docker_argv`` of a SandboxSpec with one bind mount)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.dockerproxy.policy import (AGENT_ROLE, ROLE_LABEL, Decision, Malformed, PolicyConfigError, ProxyPolicy,
                                       check_create, check_request, check_target, parse_request, policy_from_env,
                                       repository, retarget)
from services.runner.sandbox import base as runner_sandbox

ROOT = "/srv/nanoclaw/groups"
POLICY = ProxyPolicy(network="nanoclaw-sandbox", bind_roots=(ROOT, "/srv/nanoclaw/sessions"))

RUNNER_CREATE_BODY: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "1000:1000", "AttachStdin": True, "AttachStdout": True,
    "AttachStderr": True, "Tty": False, "OpenStdin": True, "StdinOnce": True, "Env": ["FOO=bar"],
    "Cmd": ["python", "-m", "sandbox.agent"], "Image": "nanoclaw-agent:3f2a9c81d0e4", "Volumes": {},
    "WorkingDir": "/workspace/group", "Entrypoint": None, "OnBuild": None,
    "Labels": {"nanoclaw.network": "nanoclaw-sandbox", "nanoclaw.role": "agent", "nanoclaw.run_id": "r1"},
    "HostConfig": {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "none", "Config": {}},
        "NetworkMode": "nanoclaw-sandbox", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": True, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
        "CapDrop": ["ALL"], "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
        "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
        "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"],
        "Tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,mode=1777,size=64m"}, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 1073741824, "NanoCpus": 1000000000,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0,
        "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
        "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
        "MemorySwap": 1073741824, "MemorySwappiness": -1, "OomKillDisable": False, "PidsLimit": 256, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "Mounts": [{"Type": "bind", "Source": f"{ROOT}/main", "Target": "/workspace/group"},
                   {"Type": "bind", "Source": "/srv/nanoclaw/sessions/main/.claude", "Target": "/home/agent/.claude",
                    "ReadOnly": True}],
        "MaskedPaths": None, "ReadonlyPaths": None, "Init": True,
    },
    "NetworkingConfig": {"EndpointsConfig": {}},
}

DELETE = object()


def body_with(**changes: Any) -> dict[str, Any]:
    """The runner's body with ``changes`` applied; keys are dotted paths (``HostConfig__Privileged`` for
    ``HostConfig.Privileged``); the value DELETE removes the key."""
    body = copy.deepcopy(RUNNER_CREATE_BODY)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = body
        for part in parents:
            target = target[part]
        if value is DELETE:
            target.pop(key, None)
        else:
            target[key] = value
    return body


def mount(source: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"Type": "bind", "Source": source, "Target": "/x", **extra}]


# --- container creation ----------------------------------------------------------------------------------------

def test_the_runners_real_create_body_is_allowed():
    assert check_create(RUNNER_CREATE_BODY, POLICY) is None


@pytest.mark.parametrize("changes", [
    {"Image": "nanoclaw-agent"},
    {"Image": "nanoclaw-agent@sha256:" + "a" * 64},
    {"Image": "docker.io/library/nanoclaw-agent:latest"},
    {"HostConfig__Runtime": "runc"},
    {"HostConfig__Runtime": ""},
    {"HostConfig__IpcMode": "private"},
    {"HostConfig__CgroupnsMode": "private"},
    {"HostConfig__SecurityOpt": ["no-new-privileges:true"]},
    {"HostConfig__Binds": [f"{ROOT}/main:/workspace/group:ro"]},
    {"HostConfig__Mounts": mount(ROOT)},
    {"NetworkingConfig__EndpointsConfig": {"nanoclaw-sandbox": {"Aliases": ["a"]}}},
    {"NetworkingConfig": DELETE},
    {"User": "1000"},
], ids=lambda c: ",".join(f"{k}={v!r}"[:60] for k, v in c.items()))
def test_variants_that_keep_the_sandbox_hardened_are_allowed(changes):
    assert check_create(body_with(**changes), POLICY) is None


VIOLATIONS = [
    # (what, changes, words the reason must contain)
    ("an image outside the allowed repositories", {"Image": "alpine:3.19"}, "image 'alpine:3.19'"),
    ("an allowed name from another registry", {"Image": "evil.example/nanoclaw-agent:1"}, "image"),
    ("no role label", {"Labels": {"nanoclaw.run_id": "r1"}}, "nanoclaw.role=agent"),
    ("another role label", {"Labels__nanoclaw.role": "service"}, "nanoclaw.role=agent"),
    ("privileged", {"HostConfig__Privileged": True}, "HostConfig.Privileged"),
    ("added capabilities", {"HostConfig__CapAdd": ["SYS_ADMIN"]}, "HostConfig.CapAdd"),
    ("capabilities not dropped", {"HostConfig__CapDrop": ["NET_RAW"]}, "CapDrop must contain ALL"),
    ("CapDrop missing", {"HostConfig__CapDrop": DELETE}, "CapDrop must contain ALL"),
    ("a writable root", {"HostConfig__ReadonlyRootfs": False}, "ReadonlyRootfs"),
    ("no no-new-privileges", {"HostConfig__SecurityOpt": []}, "no-new-privileges"),
    ("seccomp unconfined", {"HostConfig__SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]}, "unconfined"),
    ("apparmor unconfined", {"HostConfig__SecurityOpt": ["no-new-privileges", "apparmor=unconfined"]}, "unconfined"),
    ("a custom seccomp profile", {"HostConfig__SecurityOpt": ["no-new-privileges", 'seccomp={"defaultAction":'
                                                              '"SCMP_ACT_ALLOW"}']}, "SecurityOpt"),
    ("system paths unmasked", {"HostConfig__MaskedPaths": []}, "MaskedPaths"),
    ("read-only paths dropped", {"HostConfig__ReadonlyPaths": []}, "ReadonlyPaths"),
    ("the host network", {"HostConfig__NetworkMode": "host"}, "NetworkMode='host'"),
    ("the default bridge", {"HostConfig__NetworkMode": "bridge"}, "NetworkMode='bridge'"),
    ("another container's network", {"HostConfig__NetworkMode": "container:abc"}, "NetworkMode"),
    ("an endpoint on another network", {"NetworkingConfig__EndpointsConfig": {"bus": {}}}, "endpoint 'bus'"),
    ("the host pid namespace", {"HostConfig__PidMode": "host"}, "PidMode='host'"),
    ("another container's pid namespace", {"HostConfig__PidMode": "container:abc"}, "PidMode"),
    ("the host ipc namespace", {"HostConfig__IpcMode": "host"}, "IpcMode"),
    ("the host uts namespace", {"HostConfig__UTSMode": "host"}, "UTSMode"),
    ("the host user namespace", {"HostConfig__UsernsMode": "host"}, "UsernsMode"),
    ("the host cgroup namespace", {"HostConfig__CgroupnsMode": "host"}, "CgroupnsMode"),
    ("host devices", {"HostConfig__Devices": [{"PathOnHost": "/dev/kvm", "PathInContainer": "/dev/kvm",
                                               "CgroupPermissions": "rwm"}]}, "HostConfig.Devices"),
    ("GPU devices", {"HostConfig__DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]},
     "HostConfig.DeviceRequests"),
    ("device cgroup rules", {"HostConfig__DeviceCgroupRules": ["c *:* rwm"]}, "HostConfig.DeviceCgroupRules"),
    ("volumes from another container", {"HostConfig__VolumesFrom": ["nats"]}, "HostConfig.VolumesFrom"),
    ("links", {"HostConfig__Links": ["nats:nats"]}, "HostConfig.Links"),
    ("sysctls", {"HostConfig__Sysctls": {"net.ipv4.ip_forward": "1"}}, "HostConfig.Sysctls"),
    ("published ports", {"HostConfig__PortBindings": {"80/tcp": [{"HostPort": "80"}]}}, "HostConfig.PortBindings"),
    ("all ports published", {"HostConfig__PublishAllPorts": True}, "HostConfig.PublishAllPorts"),
    ("another cgroup parent", {"HostConfig__CgroupParent": "/"}, "HostConfig.CgroupParent"),
    ("extra groups", {"HostConfig__GroupAdd": ["0"]}, "HostConfig.GroupAdd"),
    ("a volume driver", {"HostConfig__VolumeDriver": "nfs"}, "HostConfig.VolumeDriver"),
    ("an unknown HostConfig field", {"HostConfig__SomethingNew": 1}, "HostConfig.SomethingNew"),
    ("a HostConfig field in another case", {"HostConfig__privileged": True}, "HostConfig.privileged"),
    ("a legacy top-level host setting", {"Privileged": True}, "unknown top-level field 'Privileged'"),
    ("no HostConfig", {"HostConfig": DELETE}, "HostConfig is required"),
    ("a named volume in Binds", {"HostConfig__Binds": ["data:/data"]}, "named volumes"),
    ("a bind outside the roots", {"HostConfig__Binds": ["/etc:/x:ro"]}, "outside the bind roots"),
    ("a bind that climbs out of a root", {"HostConfig__Binds": [f"{ROOT}/../../../etc:/x"]}, "normalised"),
    ("a bind beside a root sharing its prefix", {"HostConfig__Binds": [f"{ROOT}-evil:/x"]}, "outside the bind roots"),
    ("a bind mount outside the roots", {"HostConfig__Mounts": mount("/")}, "outside the bind roots"),
    ("a bind mount that climbs out", {"HostConfig__Mounts": mount(f"{ROOT}/main/../../..")}, "normalised"),
    ("a relative bind mount", {"HostConfig__Mounts": mount("groups/main")}, "normalised"),
    ("a volume mount", {"HostConfig__Mounts": [{"Type": "volume", "Source": "data", "Target": "/d"}]},
     "type 'volume'"),
    ("a tmpfs mount in Mounts", {"HostConfig__Mounts": [{"Type": "tmpfs", "Target": "/t"}]}, "type 'tmpfs'"),
    ("volume options on a mount", {"HostConfig__Mounts": mount(ROOT, VolumeOptions={"NoCopy": True})},
     "Mounts entry"),
    ("a mount key in another case", {"HostConfig__Mounts": [{"Type": "bind", "source": "/", "Target": "/x"}]},
     "Mounts entry"),
    ("anonymous volumes", {"Volumes": {"/data": {}}}, "Volumes"),
    ("no user", {"User": DELETE}, "User None"),
    ("an empty user", {"User": ""}, "User ''"),
    ("root by name", {"User": "root"}, "User 'root'"),
    ("uid 0", {"User": "0"}, "User '0'"),
    ("uid 0 with a group", {"User": "0:1000"}, "User '0:1000'"),
    ("uid 0 written with two digits", {"User": "00:1000"}, "User '00:1000'"),
    ("a user name (could map to uid 0 in the image)", {"User": "agent"}, "User 'agent'"),
    ("no memory limit", {"HostConfig__Memory": 0}, "HostConfig.Memory"),
    ("memory limit missing", {"HostConfig__Memory": DELETE}, "HostConfig.Memory"),
    ("no pids limit", {"HostConfig__PidsLimit": 0}, "HostConfig.PidsLimit"),
    ("an unlimited pids limit", {"HostConfig__PidsLimit": -1}, "HostConfig.PidsLimit"),
    ("another runtime", {"HostConfig__Runtime": "io.containerd.runc.v2"}, "HostConfig.Runtime"),
    ("a log driver that ships output off the host", {"HostConfig__LogConfig": {"Type": "syslog", "Config": {}}},
     "HostConfig.LogConfig"),
]


@pytest.mark.parametrize("changes,words", [(c, w) for _, c, w in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_each_violation_is_denied_with_a_reason_naming_it(changes, words):
    reason = check_create(body_with(**changes), POLICY)
    assert reason is not None and words in reason, reason


def test_a_create_call_is_denied_with_403_and_the_reason():
    request = parse_request("POST", "/v1.41/containers/create?name=x",
                            json.dumps(body_with(HostConfig__Privileged=True)).encode())
    decision = check_request(request, POLICY)
    assert (decision.allowed, decision.status, decision.route) == (False, 403, "containers.create")
    assert decision.reason == "HostConfig.Privileged=True is not allowed"


def test_a_create_body_that_is_not_an_object_is_denied():
    assert check_create(["Image"], POLICY) == "the create body must be a JSON object"


def test_a_body_that_is_not_json_is_malformed():
    with pytest.raises(Malformed, match="not valid JSON"):
        parse_request("POST", "/containers/create", b"{nope")


def test_keys_equal_but_for_case_are_malformed_because_the_engine_reads_them_as_one():
    body = b'{"Image": "nanoclaw-agent", "HostConfig": {"Privileged": false, "privileged": true}}'
    with pytest.raises(Malformed, match="privileged"):
        parse_request("POST", "/containers/create", body)


def test_the_allowed_runtimes_come_from_the_policy():
    gvisor = ProxyPolicy(network="nanoclaw-sandbox", bind_roots=(ROOT, "/srv/nanoclaw/sessions"), runtimes=("runsc",))
    assert check_create(body_with(HostConfig__Runtime="runsc"), gvisor) is None
    assert "Runtime" in check_create(body_with(HostConfig__Runtime="runc"), gvisor)


# --- which calls pass ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,target,route", [
    ("HEAD", "/_ping", "ping"),
    ("GET", "/_ping", "ping"),
    ("GET", "/v1.41/_ping", "ping"),
    ("GET", "/version", "version"),
    ("GET", "/v1.41/info", "info"),
    ("GET", "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22nanoclaw.role%3Dagent%22%5D%7D",
     "containers.list"),
    ("GET", "/v1.41/images/nanoclaw-agent:latest/json", "images.inspect"),
    ("GET", "/v1.41/images/registry.local:5000/team/nanoclaw-agent:1/json", "images.inspect"),
    ("GET", "/v1.41/networks/nanoclaw-sandbox", "networks.inspect"),
])
def test_read_only_engine_calls_pass(method, target, route):
    assert check_request(parse_request(method, target), POLICY) == Decision(True, route=route)


@pytest.mark.parametrize("method,target,route", [
    ("GET", "/v1.41/containers/nanoclaw-main-1/json", "container.inspect"),
    ("POST", "/v1.41/containers/nanoclaw-main-1/attach?stream=1&stdin=1&stdout=1&stderr=1", "container.attach"),
    ("POST", "/v1.41/containers/nanoclaw-main-1/start", "container.start"),
    ("POST", "/v1.41/containers/nanoclaw-main-1/wait?condition=removed", "container.wait"),
    ("POST", "/v1.41/containers/nanoclaw-main-1/stop?t=10", "container.stop"),
    ("POST", "/v1.41/containers/nanoclaw-main-1/kill", "container.kill"),
    ("DELETE", "/v1.41/containers/nanoclaw-main-1?force=True", "container.remove"),
])
def test_calls_on_one_container_pass_pending_its_label_check(method, target, route):
    decision = check_request(parse_request(method, target), POLICY)
    assert decision == Decision(True, route=route, container="nanoclaw-main-1")


@pytest.mark.parametrize("method,target", [
    ("POST", "/v1.41/containers/nanoclaw-main-1/exec"),
    ("POST", "/v1.41/exec/abc/start"),
    ("POST", "/v1.41/build"),
    ("POST", "/v1.41/images/create?fromImage=alpine"),
    ("POST", "/v1.41/images/nanoclaw-agent/push"),
    ("POST", "/v1.41/images/nanoclaw-agent/tag?repo=x"),
    ("DELETE", "/v1.41/images/nanoclaw-agent"),
    ("GET", "/v1.41/images/json"),
    ("GET", "/v1.41/volumes"),
    ("POST", "/v1.41/volumes/create"),
    ("GET", "/v1.41/networks"),
    ("POST", "/v1.41/networks/create"),
    ("POST", "/v1.41/networks/nanoclaw-sandbox/connect"),
    ("POST", "/v1.41/networks/nanoclaw-sandbox/disconnect"),
    ("DELETE", "/v1.41/networks/nanoclaw-sandbox"),
    ("POST", "/v1.41/networks/prune"),
    ("POST", "/v1.41/containers/prune"),
    ("POST", "/v1.41/swarm/init"),
    ("GET", "/v1.41/plugins"),
    ("GET", "/v1.41/system/df"),
    ("GET", "/v1.41/events"),
    ("GET", "/v1.41/containers/nanoclaw-main-1/archive?path=/"),
    ("PUT", "/v1.41/containers/nanoclaw-main-1/archive?path=/"),
    ("GET", "/v1.41/containers/nanoclaw-main-1/export"),
    ("GET", "/v1.41/containers/nanoclaw-main-1/logs"),
    ("POST", "/v1.41/commit?container=nanoclaw-main-1"),
    ("POST", "/v1.41/containers/nanoclaw-main-1/update"),
    ("POST", "/v1.41/containers/nanoclaw-main-1/rename?name=x"),
    ("POST", "/v1.41/containers/nanoclaw-main-1/restart"),
    ("HEAD", "/v1.41/containers/nanoclaw-main-1/archive"),
    ("post", "/v1.41/containers/nanoclaw-main-1/start"),
    ("POST", "/session"),
])
def test_every_other_call_is_denied(method, target):
    decision = check_request(parse_request(method, target), POLICY)
    assert (decision.allowed, decision.status) == (False, 403)
    assert "is not an allowed call" in decision.reason


def test_api_versions_before_1_24_are_denied_because_start_could_carry_a_host_config():
    decision = check_request(parse_request("POST", "/v1.23/containers/nanoclaw-main-1/start"), POLICY)
    assert not decision.allowed and "API version 1.23" in decision.reason


def test_a_body_on_any_call_but_create_is_denied():
    request = parse_request("POST", "/v1.41/containers/nanoclaw-main-1/start", b'{"Privileged": true}')
    decision = check_request(request, POLICY)
    assert not decision.allowed and "request body is only accepted on POST /containers/create" in decision.reason


@pytest.mark.parametrize("target", [
    "/v1.41/containers/x/../../build",
    "/v1.41/containers/x/%2e%2e/%2e%2e/build",
    "/v1.41/containers/x/stop/",
    "/v1.41//containers/x/stop",
    "//containers/create",
    "http://docker/containers/create",
    "/containers/x%0a/stop",
])
def test_paths_the_engine_would_route_elsewhere_are_malformed(target):
    with pytest.raises(Malformed):
        parse_request("POST", target)


def test_a_container_carrying_the_agent_label_passes_its_check():
    decision = Decision(True, route="container.stop", container="nanoclaw-main-1")
    inspect = {"Id": "a" * 64, "Config": {"Labels": {ROLE_LABEL: AGENT_ROLE}}}
    assert check_target(decision, inspect) is decision


@pytest.mark.parametrize("labels", [None, {}, {ROLE_LABEL: "service"}, {"nanoclaw.run_id": "r1"}])
def test_a_container_without_the_agent_label_is_denied_by_name(labels):
    decision = check_target(Decision(True, route="container.stop", container="nats"),
                            {"Id": "b" * 64, "Config": {"Labels": labels}})
    assert (decision.allowed, decision.status) == (False, 403)
    assert decision.reason == "container 'nats' is not a nanoclaw sandbox (label nanoclaw.role=agent missing)"


@pytest.mark.parametrize("target,expected", [
    ("/v1.41/containers/nanoclaw-main-1/stop?t=10", "/v1.41/containers/{id}/stop?t=10"),
    ("/containers/nanoclaw-main-1/attach?stream=1", "/containers/{id}/attach?stream=1"),
    ("/v1.41/containers/nanoclaw-main-1?force=True", "/v1.41/containers/{id}?force=True"),
    ("/v1.41/containers/nanoclaw-main-1/json", "/v1.41/containers/{id}/json"),
])
def test_a_checked_call_is_forwarded_naming_the_container_by_its_inspected_id(target, expected):
    full_id = "c" * 64
    assert retarget(parse_request("POST", target), full_id) == expected.format(id=full_id)


def test_the_proxy_knows_the_runners_role_label():
    assert (ROLE_LABEL, AGENT_ROLE) == (runner_sandbox.ROLE_LABEL, runner_sandbox.AGENT_ROLE)


@pytest.mark.parametrize("image,repo", [
    ("nanoclaw-agent", "nanoclaw-agent"),
    ("nanoclaw-agent:latest", "nanoclaw-agent"),
    ("nanoclaw-agent@sha256:" + "0" * 64, "nanoclaw-agent"),
    ("nanoclaw-agent:1@sha256:" + "0" * 64, "nanoclaw-agent"),
    ("docker.io/library/nanoclaw-agent:1", "nanoclaw-agent"),
    ("registry.local:5000/nanoclaw-agent", "registry.local:5000/nanoclaw-agent"),
    ("registry.local:5000/nanoclaw-agent:2", "registry.local:5000/nanoclaw-agent"),
])
def test_the_repository_of_an_image_reference_drops_tag_digest_and_the_default_registry(image, repo):
    assert repository(image) == repo


# --- settings ---------------------------------------------------------------------------------------------------

def test_the_policy_reads_its_settings_from_the_environment():
    policy = policy_from_env({"NANOCLAW_DOCKER_PROXY__NETWORK": "deploy_sandbox",
                              "NANOCLAW_DOCKER_PROXY__BIND_ROOTS": "/srv/a, /srv/b",
                              "NANOCLAW_DOCKER_PROXY__IMAGES": '["nanoclaw-agent", "other"]',
                              "PATH": "/usr/bin"})
    assert policy == ProxyPolicy(network="deploy_sandbox", bind_roots=("/srv/a", "/srv/b"),
                                 images=("nanoclaw-agent", "other"), runtimes=("runc",))


@pytest.mark.parametrize("environ,message", [
    ({}, "NANOCLAW_DOCKER_PROXY__NETWORK: required but not set; NANOCLAW_DOCKER_PROXY__BIND_ROOTS: required"),
    ({"NANOCLAW_DOCKER_PROXY__NETWORK": "n", "NANOCLAW_DOCKER_PROXY__BIND_ROOTS": "/"},
     "NANOCLAW_DOCKER_PROXY__BIND_ROOTS: Value error, expected absolute normalised host directories other than '/'"),
    ({"NANOCLAW_DOCKER_PROXY__NETWORK": "n", "NANOCLAW_DOCKER_PROXY__BIND_ROOTS": "data/groups"},
     "NANOCLAW_DOCKER_PROXY__BIND_ROOTS: Value error"),
    ({"NANOCLAW_DOCKER_PROXY__NETWORK": "n", "NANOCLAW_DOCKER_PROXY__BIND_ROOTS": "/srv/a/"},
     "NANOCLAW_DOCKER_PROXY__BIND_ROOTS: Value error"),
    ({"NANOCLAW_DOCKER_PROXY__NETWORK": "n", "NANOCLAW_DOCKER_PROXY__BIND_ROOTS": '["/srv/a"'},
     "NANOCLAW_DOCKER_PROXY__BIND_ROOTS: not a JSON list"),
    ({"NANOCLAW_DOCKER_PROXY__NETWORK": "n", "NANOCLAW_DOCKER_PROXY__BIND_ROOTS": "/a",
      "NANOCLAW_DOCKER_PROXY__IMAGES": "nanoclaw-agent:latest"},
     "NANOCLAW_DOCKER_PROXY__IMAGES: Value error, expected repository names without tag or digest"),
    ({"NANOCLAW_DOCKER_PROXY__NETWORK": "n", "NANOCLAW_DOCKER_PROXY__BINDROOTS": "/a"},
     "NANOCLAW_DOCKER_PROXY__BINDROOTS: unknown setting"),
])
def test_a_missing_or_invalid_setting_is_named(environ, message):
    with pytest.raises(PolicyConfigError) as exc:
        policy_from_env(environ)
    assert str(exc.value).startswith(message), str(exc.value)


def test_nanoclaw_deploy_docker_proxy_names_a_missing_setting_and_exits_2():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANOCLAW_DOCKER_PROXY__")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[2]), COLUMNS="200",
               NANOCLAW_DOCKER_PROXY__NETWORK="nanoclaw-sandbox")
    result = subprocess.run([sys.executable, "-m", "services.cli.main", "deploy", "docker-proxy"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "configuration error: NANOCLAW_DOCKER_PROXY__BIND_ROOTS: required but not set" in result.stderr
