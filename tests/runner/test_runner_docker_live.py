"""LIVE: the real Docker engine, the real docker backend and policy, the local ``nanoclaw-base:bookworm`` image.

Each test module run gets its own internal network (a free /24, tests/docker_support.py) and a scope label, so it never
touches other sandboxes on the engine. A missing engine or image FAILS (conftest), never skips.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from services.runner.config import RunnerConfig
from services.runner.policy import policy_from_config
from services.runner.relay import TcpRelay
from services.runner.sandbox.base import (AGENT_ROLE, GROUP_LABEL, ROLE_LABEL, RUN_ID_LABEL, Mount, SandboxSpec,
                                          SandboxUnavailable, container_name)
from services.runner.sandbox.docker import DockerBackend, bridge_interface, gateway_ip
from services.runner.supervisor import END_MARKER, START_MARKER, supervise
from tests.docker_support import free_subnet
from tests.support import eventually

pytestmark = pytest.mark.docker
SCOPE = f"nanoclaw.test={uuid.uuid4().hex[:12]}"

PROBE = f"""
import json, os, socket, subprocess, sys, time
inp = json.loads(sys.stdin.read())
res = {{}}
def attempt(fn):
    try:
        return fn()
    except Exception as e:
        return 'ERR ' + type(e).__name__ + ': ' + str(e)
def write(path):
    with open(path, 'w') as f:
        f.write('x')
    return 'ok'
def connect(host, port, send=None):
    s = socket.create_connection((host, port), timeout=3)
    if send:
        s.sendall(send); s.shutdown(socket.SHUT_WR)
        data = b''
        while chunk := s.recv(100):
            data += chunk
        s.close()
        return data.decode()
    s.close()
    return 'connected'
def spawn_many(n):
    procs, err = [], None
    for _ in range(n):
        try:
            procs.append(subprocess.Popen(['sleep', '30']))
        except Exception as e:
            err = type(e).__name__
            break
    for p in procs:
        p.kill(); p.wait()
    return [len(procs), err]
status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
res['uid'], res['gid'] = os.getuid(), os.getgid()
res['cap_eff'], res['no_new_privs'] = status['CapEff'].strip(), status['NoNewPrivs'].strip()
res['seccomp'] = status['Seccomp'].strip()
res['uid_map'] = open('/proc/self/uid_map').read().split()
res['pid1'] = open('/proc/1/cmdline').read().split(chr(0))[0]
res['write_root'] = attempt(lambda: write('/probe'))
res['write_etc'] = attempt(lambda: write('/etc/probe'))
res['write_home'] = attempt(lambda: write('/home/agent/probe'))
res['write_tmp'] = attempt(lambda: write('/tmp/probe'))
res['write_group'] = attempt(lambda: write('/workspace/group/probe.txt'))
res['write_global'] = attempt(lambda: write('/workspace/global/probe.txt'))
res['write_claude'] = attempt(lambda: write('/home/agent/.claude/probe.txt'))
write('/tmp/x.sh'); os.chmod('/tmp/x.sh', 0o755)
res['exec_tmp'] = attempt(lambda: subprocess.run(['/tmp/x.sh']).returncode)
res['outside'] = attempt(lambda: connect('1.1.1.1', 53))
res['bridge_peer'] = attempt(lambda: connect(inp['peer_ip'], 8080))
res['relay'] = attempt(lambda: connect(inp['gateway'], inp['relay_port'], b'ping'))
res['loopback_only'] = attempt(lambda: connect(inp['gateway'], inp['echo_port']))
res['pids'] = spawn_many(400)
sys.stdout.write({START_MARKER!r} + chr(10) + json.dumps(res) + chr(10) + {END_MARKER!r} + chr(10))
sys.stdout.flush()
while not os.path.exists('/workspace/group/done'):  # the test inspects the running container meanwhile
    time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def network(docker_client, base_image) -> tuple[str, str]:
    """A fresh name and a free subnet for this module's internal network; removed afterwards."""
    name = f"nanoclaw-test-{uuid.uuid4().hex[:8]}"
    yield name, free_subnet()
    for c in docker_client.containers.list(all=True, filters={"label": SCOPE}, ignore_removed=True):
        try:
            c.remove(force=True)  # whatever a failed test left behind
        except docker.errors.APIError:
            pass
    try:
        docker_client.networks.get(name).remove()
    except docker.errors.NotFound:
        pass


def unique(folder: str) -> str:
    """A container name no earlier run can have left behind."""
    return container_name(folder, time.time_ns() // 1_000_000)


@pytest.fixture
def config(network, base_image) -> RunnerConfig:
    return RunnerConfig(network=network[0], network_subnet=network[1], image=base_image)


def scoped(config: RunnerConfig) -> DockerBackend:
    """A backend whose sandboxes carry this module's scope label (found and removed by it alone)."""
    policy = policy_from_config(config)
    policy = dataclasses.replace(policy, labels={**policy.labels, SCOPE.split("=")[0]: SCOPE.split("=")[1]})
    return DockerBackend(config, policy=policy, scope_label=SCOPE)


@pytest.fixture
def backend(config: RunnerConfig) -> DockerBackend:
    return scoped(config)


@pytest.fixture
def peer(docker_client, base_image):
    """A container on the default bridge serving HTTP on 8080 (something a sandbox must NOT reach)."""
    c = docker_client.containers.run(base_image, ["python3", "-m", "http.server", "8080"], detach=True, remove=True,
                                     labels={SCOPE.split("=")[0]: SCOPE.split("=")[1]})
    yield c
    try:
        c.kill()
    except docker.errors.APIError:
        pass


def dirs(tmp_path: Path, owner: tuple[int, int]) -> list[Mount]:
    out = []
    for host, target, ro in (("group", "/workspace/group", False), ("global", "/workspace/global", True),
                             ("claude", "/home/agent/.claude", False)):
        (tmp_path / host).mkdir()
        os.chown(tmp_path / host, *owner)  # the sandbox user must own its writable dirs (host ids: userns aware)
        out.append(Mount(str(tmp_path / host), target, read_only=ro))
    return out


async def host_can_reach(ip: str, port: int) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
    except (OSError, asyncio.TimeoutError):
        return False
    w.close()
    return True


async def test_a_live_sandbox_is_locked_down_and_reaches_only_the_relay(backend, config, docker_client, peer,
                                                                        tmp_path: Path) -> None:
    backend.policy = dataclasses.replace(backend.policy, runtime="runc")  # a named runtime the engine has
    await backend.ensure_available()
    gateway = gateway_ip(config)
    peer.reload()
    peer_ip = peer.attrs["NetworkSettings"]["IPAddress"]
    await eventually(lambda: host_can_reach(peer_ip, 8080), timeout=30)  # control: the peer is up and reachable

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"echo:" + await r.read())
        await w.drain()
        w.close()
    echo_server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = echo_server.sockets[0].getsockname()[1]
    # The relay listens on the gateway IP only; the echo server itself only on loopback.
    relay = await TcpRelay(gateway, 0, "127.0.0.1", echo_port).start()

    name = unique("live_probe")
    owner = backend.host_owner()
    assert owner is not None
    spec = SandboxSpec(name=name, image=config.image, mounts=dirs(tmp_path, owner), env={"HOME": "/home/agent"},
                       labels={RUN_ID_LABEL: "run-live", GROUP_LABEL: "live_probe"},
                       command=["python3", "-c", PROBE])
    seen: dict[str, Any] = {}

    async def on_output(block: dict[str, Any]) -> None:
        seen["probe"] = block
        seen["inspect"] = await asyncio.to_thread(docker_client.api.inspect_container, name)
        seen["network"] = await asyncio.to_thread(lambda: docker_client.networks.get(config.network).attrs)
        (tmp_path / "group" / "done").write_text("")

    stdin = {"gateway": gateway, "relay_port": relay.port, "echo_port": echo_port, "peer_ip": peer_ip}
    try:
        outcome = await supervise(backend, spec, json.dumps(stdin).encode(), on_output=on_output,
                                  hard_timeout_ms=120_000, stop_grace_s=2, log_dir=tmp_path / "logs")
    finally:
        await relay.close()
        echo_server.close()

    assert (outcome.status, outcome.exit_code, outcome.timed_out) == ("succeeded", 0, False), outcome
    host, cfg, probe = seen["inspect"]["HostConfig"], seen["inspect"]["Config"], seen["probe"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and cfg["User"] == "1000:1000"
    assert host["PidsLimit"] == 256 and host["Memory"] == 1 << 30 and host["MemorySwap"] == 1 << 30
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,mode=1777,size=64m"}
    assert host["Init"] is True and host["AutoRemove"] is True and host["LogConfig"]["Type"] == "none"
    assert host["Runtime"] == "runc" and host["UsernsMode"] == "" and host["Privileged"] is False
    assert host["NetworkMode"] == config.network and seen["network"]["Internal"] is True
    assert seen["network"]["Options"] == {"com.docker.network.bridge.enable_icc": "false",
                                          "com.docker.network.bridge.name": bridge_interface(config)}
    labels = {ROLE_LABEL: AGENT_ROLE, RUN_ID_LABEL: "run-live", GROUP_LABEL: "live_probe"}
    assert labels.items() <= cfg["Labels"].items()
    # Inside the sandbox.
    assert (probe["uid"], probe["gid"]) == (1000, 1000)
    assert probe["cap_eff"] == "0000000000000000" and probe["no_new_privs"] == "1"
    # Docker's default seccomp profile is on (2: SECCOMP_MODE_FILTER); nothing in the argv or policy turns it off.
    assert probe["seccomp"] == "2" and "name=seccomp" in " ".join(docker_client.info()["SecurityOptions"])
    # User namespaces: with remapping, container uid 0 is the remap base on the host and the sandbox's files
    # belong to base + 1000 (what the runner chowns to); without, ids are the host's. Asserted for this engine.
    engine = backend.engine
    assert engine is not None and engine.userns == ("name=userns" in docker_client.info()["SecurityOptions"])
    assert probe["uid_map"][:2] == ["0", str(engine.userns_base[0] if engine.userns else 0)], probe["uid_map"]
    assert (tmp_path / "group" / "probe.txt").stat().st_uid == owner[0] == engine.host_ids(1000, 1000)[0]
    assert probe["pid1"].endswith("docker-init")  # --init works on this engine
    for path in ("write_root", "write_etc", "write_home"):
        assert "Read-only file system" in probe[path], (path, probe[path])
    assert "Read-only file system" in probe["write_global"]  # non-main: global memory is read-only
    assert probe["write_tmp"] == probe["write_group"] == probe["write_claude"] == "ok"
    assert "PermissionError" in str(probe["exec_tmp"])  # /tmp is noexec
    assert probe["outside"].startswith("ERR") and probe["bridge_peer"].startswith("ERR"), probe
    assert probe["relay"] == "echo:ping"  # the gateway IP is reachable, through the relay
    assert probe["loopback_only"].startswith("ERR")  # a loopback-only host service is not
    assert probe["pids"][0] < 256 and probe["pids"][1] is not None  # the pids limit bites
    assert (tmp_path / "group" / "probe.txt").read_text() == "x"
    await eventually(lambda: _absent(backend, "nanoclaw.run_id=run-live"), timeout=30)  # --rm removed it


async def _absent(backend: DockerBackend, label: str) -> bool:
    return await backend.list_names(label) == []


async def test_a_live_hard_timeout_after_output_is_idle_cleanup(backend, config) -> None:
    await backend.ensure_available()
    code = (f"import sys, time; sys.stdin.read(); print({START_MARKER!r}); print('{{\"result\": \"hi\"}}'); "
            f"print({END_MARKER!r}, flush=True); time.sleep(600)")
    spec = SandboxSpec(name=unique("live_idle"), image=config.image, labels={RUN_ID_LABEL: "run-idle"},
                       command=["python3", "-c", code])
    outcome = await supervise(backend, spec, b"{}", on_output=_ignore, hard_timeout_ms=1500, stop_grace_s=1,
                              log_dir=None)
    assert (outcome.status, outcome.timed_out, outcome.outputs) == ("succeeded", True, [{"result": "hi"}]), outcome
    assert outcome.exit_code in (137, 143)  # SIGTERM through docker-init, or SIGKILL after the grace
    await eventually(lambda: _absent(backend, "nanoclaw.run_id=run-idle"), timeout=30)


async def test_a_live_failing_run_and_a_missing_image(backend, config, tmp_path: Path) -> None:
    await backend.ensure_available()
    fail = SandboxSpec(name=unique("live_fail"), image=config.image, labels={RUN_ID_LABEL: "run-fail"},
                       command=["python3", "-c", "import sys; sys.stdin.read(); sys.stderr.write('boom'); sys.exit(3)"])
    outcome = await supervise(backend, fail, b"{}", on_output=_ignore, hard_timeout_ms=60_000, log_dir=None)
    assert (outcome.status, outcome.exit_code, outcome.error) == ("failed", 3, "Container exited with code 3: boom")
    missing = SandboxSpec(name=unique("live_missing"), image="nanoclaw-no-such-image:never")
    outcome = await supervise(backend, missing, b"{}", on_output=_ignore, hard_timeout_ms=60_000, log_dir=None)
    assert outcome.status == "failed" and outcome.exit_code == 125 and "No such image" in (outcome.error or "")
    assert await backend.image_present(config.image) and not await backend.image_present("nanoclaw-no-such-image:x")


async def test_ensure_available_warns_about_a_missing_image(config, caplog) -> None:
    backend = DockerBackend(config.model_copy(update={"image": "nanoclaw-no-such-image:never"}))
    with caplog.at_level(logging.WARNING):
        await backend.ensure_available()
    assert any("nanoclaw-no-such-image:never not found" in r.getMessage() for r in caplog.records)


async def _ignore(block: dict[str, Any]) -> None:
    return None


async def test_orphans_are_found_by_label_and_removed(backend, config) -> None:
    await backend.ensure_available()
    spec = SandboxSpec(name=unique("live_orphan"), image=config.image, labels={RUN_ID_LABEL: "orphan"},
                       command=["sleep", "600"])
    proc = await backend.run(spec)
    await eventually(lambda: _running(backend, spec.name), timeout=30)
    proc.kill()  # the runner "crashes": its docker CLI dies, the container stays
    await proc.wait()
    assert await backend.list_names("nanoclaw.run_id=orphan") == [spec.name]
    assert spec.name in await backend.remove_orphans()
    await eventually(lambda: _absent(backend, "nanoclaw.run_id=orphan"), timeout=30)


async def _running(backend: DockerBackend, name: str) -> bool:
    return name in await backend.list_names(SCOPE)


async def test_stop_ends_a_live_sandbox_and_tolerates_a_gone_one(backend, config) -> None:
    await backend.ensure_available()
    spec = SandboxSpec(name=unique("live_stop"), image=config.image, command=["sleep", "600"])
    proc = await backend.run(spec)
    await eventually(lambda: _running(backend, spec.name), timeout=30)
    await backend.stop(spec.name, 1)
    assert await proc.wait() != 0
    await backend.stop(spec.name, 1)  # already gone: not an error


async def test_ensure_available_refuses_a_network_that_is_not_internal(docker_client, base_image) -> None:
    name = f"nanoclaw-test-open-{uuid.uuid4().hex[:8]}"
    net = docker_client.networks.create(name, driver="bridge")
    try:
        net.reload()  # the create response lacks the IPAM details
        subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
        with pytest.raises(SandboxUnavailable, match="not internal"):
            await DockerBackend(RunnerConfig(network=name, network_subnet=subnet)).ensure_available()
    finally:
        net.remove()


PROVIDED = {"nats_urls": ["nats://nats:4222"], "model_proxy_url": "http://broker:8788"}


async def test_a_provided_network_is_used_as_it_is_never_created_or_checked_for_a_subnet(docker_client,
                                                                                          base_image) -> None:
    # The compose deployment owns the sandbox network (NATS and the model proxy are members of it).
    name = f"nanoclaw-test-provided-{uuid.uuid4().hex[:8]}"
    config = RunnerConfig(network=name, sandbox_endpoints=PROVIDED)
    with pytest.raises(SandboxUnavailable, match="not found.*the deployment provides it"):
        await DockerBackend(config).ensure_available()
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(name)  # not created by the runner
    net = docker_client.networks.create(name, driver="bridge", internal=True)
    try:
        await DockerBackend(config).ensure_available()  # any subnet: the deployment chose it
    finally:
        net.remove()
    open_net = docker_client.networks.create(name, driver="bridge")
    try:
        with pytest.raises(SandboxUnavailable, match="not internal"):
            await DockerBackend(config).ensure_available()
    finally:
        open_net.remove()


async def test_a_runtime_is_used_when_the_engine_has_it_and_refused_at_start_when_not(config, docker_client) -> None:
    # gVisor (runsc) is optional: on an engine without it the runner must refuse to start, naming it; with it, a
    # sandbox runs on it. Asserted for whichever this engine is.
    backend = scoped(config.model_copy(update={"runtime": "runsc"}))
    if "runsc" not in docker_client.info()["Runtimes"]:
        with pytest.raises(SandboxUnavailable, match="runner.runtime 'runsc' is not a runtime of this docker engine"):
            await backend.ensure_available()
        return
    await backend.ensure_available()
    spec = SandboxSpec(name=unique("live_runsc"), image=config.image, command=["python3", "-c", "print(1)"])
    outcome = await supervise(backend, spec, b"{}", on_output=_ignore, hard_timeout_ms=120_000, log_dir=None)
    assert (outcome.status, outcome.exit_code) == ("succeeded", 0), outcome


def test_the_engine_is_reachable_for_these_tests(docker_client) -> None:
    assert docker_client.ping() is True and sys.platform == "linux"
