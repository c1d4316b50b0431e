"""The Docker API proxy against the real engine, driven the way the runner drives it: the docker CLI with
``DOCKER_HOST=tcp://…`` for the run itself and ``docker stop``, docker-py (the runner's own DockerBackend) for
management. One proxy on 127.0.0.1:<free port> for the module, allowing ``nanoclaw-base`` images on a throwaway
internal network and bind mounts under a temporary root."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from deploy.dockerproxy.policy import ProxyPolicy
from deploy.dockerproxy.server import DockerProxy
from services.harness.natsserver import free_port
from services.runner.config import RunnerConfig
from services.runner.policy import policy_from_config
from services.runner.sandbox.base import Mount, SandboxSpec
from services.runner.sandbox.docker import DockerBackend, docker_argv
from tests.docker_support import base_image, docker_client

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

TEST_LABEL = "nanoclaw.test"


@dataclass
class Proxy:
    url: str
    network: str
    bind_root: Path
    tag: str  # TEST_LABEL value on everything this module starts

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.url}

    def cli(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], input=stdin, capture_output=True, env=self.env(), timeout=60)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    engine = docker_client()
    image = base_image()
    tag = uuid.uuid4().hex[:8]
    network = engine.networks.create(f"nc-proxytest-{tag}", driver="bridge", internal=True, labels={TEST_LABEL: tag})
    bind_root = tmp_path_factory.mktemp("bindroot")
    policy = ProxyPolicy(network=network.name, images=(image.split(":")[0],), bind_roots=(str(bind_root),))
    loop = asyncio.new_event_loop()
    server = DockerProxy(policy)
    port = loop.run_until_complete(server.start("127.0.0.1", 0)).sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, name="docker-proxy", daemon=True)
    thread.start()
    try:
        yield Proxy(f"tcp://127.0.0.1:{port}", network.name, bind_root, tag)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        for container in engine.containers.list(all=True, filters={"label": f"{TEST_LABEL}={tag}"}):
            container.remove(force=True)
        network.remove()


def sandbox_spec(proxy: Proxy, command: list[str], **kwargs) -> SandboxSpec:
    return SandboxSpec(name=f"nc-proxytest-{uuid.uuid4().hex[:8]}", image=base_image(), command=command,
                       labels={TEST_LABEL: proxy.tag}, **kwargs)


def runner_argv(proxy: Proxy, spec: SandboxSpec) -> list[str]:
    """The runner's exact ``docker run`` argv (its policy for this network), without the program name."""
    return docker_argv(spec, policy_from_config(RunnerConfig(network=proxy.network)))[1:]


def gone(name: str) -> bool:
    return not docker_client().containers.list(all=True, filters={"name": f"^{name}$"})


def start_plain(proxy: Proxy, **labels: str) -> docker.models.containers.Container:
    """A container started on the engine directly (not through the proxy)."""
    return docker_client().containers.run(base_image(), ["sleep", "60"], detach=True, network=proxy.network,
                                          name=f"nc-proxytest-{uuid.uuid4().hex[:8]}",
                                          labels={TEST_LABEL: proxy.tag, **labels})


def test_a_hardened_run_through_the_proxy_passes_stdin_output_and_the_exit_code(proxy):
    workspace = proxy.bind_root / "group"
    workspace.mkdir()
    (workspace / "hello.txt").write_text("from the bind mount\n")
    workspace.chmod(0o755)  # the sandbox runs as 1000:1000
    spec = sandbox_spec(proxy, ["sh", "-c", "cat; cat /workspace/group/hello.txt; echo done >&2; exit 3"],
                        mounts=[Mount(str(workspace), "/workspace/group")])
    # cat only finishes if the half-close reaches the container. (This test also caught attach streams being
    # garbage-collected mid-stream, output lost in about half the runs: DockerProxy now holds its handlers.)
    stdin = b"x" * 200_000 + b"\nend of input\n"

    result = proxy.cli(*runner_argv(proxy, spec), stdin=stdin)

    assert result.returncode == 3, result.stderr
    assert result.stdout == stdin + b"from the bind mount\n"
    assert result.stderr == b"done\n"
    assert gone(spec.name)  # --rm


def test_a_privileged_run_is_refused_with_the_proxys_message_and_logged(proxy, caplog):
    spec = sandbox_spec(proxy, ["true"])
    argv = runner_argv(proxy, spec)
    argv.insert(1, "--privileged")

    with caplog.at_level(logging.WARNING, logger="deploy.dockerproxy.server"):
        result = proxy.cli(*argv)

    assert result.returncode == 125
    assert b"Error response from daemon: docker-proxy: HostConfig.Privileged=True is not allowed" in result.stderr
    assert gone(spec.name)
    assert any("denied POST /v1." in r.message and "Privileged" in r.message for r in caplog.records)


def test_a_run_mounting_a_path_outside_the_bind_roots_is_refused(proxy):
    spec = sandbox_spec(proxy, ["true"], mounts=[Mount("/etc", "/host-etc")])
    result = proxy.cli(*runner_argv(proxy, spec))
    assert result.returncode == 125
    assert b"docker-proxy: HostConfig.Mounts source: '/etc' is outside the bind roots" in result.stderr


def test_stopping_a_container_that_is_not_an_agent_is_refused(proxy):
    plain = start_plain(proxy)
    result = proxy.cli("stop", "-t", "1", plain.name)
    assert result.returncode == 1
    assert f"docker-proxy: container '{plain.name}' is not a nanoclaw sandbox".encode() in result.stderr
    plain.reload()
    assert plain.status == "running"


def test_creating_a_network_is_refused(proxy):
    name = f"nc-proxytest-{proxy.tag}-extra"
    result = proxy.cli("network", "create", name)
    assert result.returncode == 1
    assert b"docker-proxy: POST /networks/create is not an allowed call" in result.stderr
    with pytest.raises(docker.errors.NotFound):
        docker_client().networks.get(name)


def test_stopping_a_missing_container_gets_the_engines_no_such_container(proxy):
    result = proxy.cli("stop", "-t", "1", f"nc-proxytest-missing-{uuid.uuid4().hex[:8]}")
    assert result.returncode == 1
    assert b"No such container" in result.stderr and b"docker-proxy" not in result.stderr


def test_docker_py_pings_inspects_lists_agents_and_stops_and_removes_one(proxy):
    agent = start_plain(proxy, **{"nanoclaw.role": "agent"})
    client = docker.DockerClient(base_url=proxy.url, timeout=10)
    try:
        assert client.ping()
        assert client.info()["ServerVersion"]
        assert client.networks.get(proxy.network).attrs["Internal"] is True
        assert client.images.get(base_image()).id
        rows = client.api.containers(all=True, filters={"label": ["nanoclaw.role=agent", f"{TEST_LABEL}={proxy.tag}"]})
        assert [row["Names"][0].lstrip("/") for row in rows] == [agent.name]
        with pytest.raises(docker.errors.APIError, match="docker-proxy: POST /containers/.*/exec is not an allowed"):
            client.api.exec_create(agent.name, ["true"])
        container = client.containers.get(agent.name)
        container.stop(timeout=1)
        container.remove(force=True)
        assert gone(agent.name)
    finally:
        client.close()


async def test_the_runners_docker_backend_runs_stops_and_cleans_up_sandboxes_through_the_proxy(proxy, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", proxy.url)  # the CLI (run, stop) and docker.from_env() both read it
    scope = f"{TEST_LABEL}={proxy.tag}"
    backend = DockerBackend(RunnerConfig(network=proxy.network, image=base_image()), scope_label=scope)
    assert await backend.image_present(base_image())
    process = await backend.run(sandbox_spec(proxy, ["sh", "-c", "cat; sleep 60"]))
    orphan = start_plain(proxy, **{"nanoclaw.role": "agent", "nanoclaw.network": proxy.network})
    await process.send_input(b"{}")
    for _ in range(50):  # until the sandbox is listed as running
        if process.name in await backend.list_names(scope):
            break
        await asyncio.sleep(0.1)

    await backend.stop(process.name, 1)
    assert await asyncio.wait_for(process.wait(), 15) != 0
    assert sorted(await backend.remove_orphans()) == [orphan.name]
    assert gone(process.name) and gone(orphan.name)


def raw_exchange(proxy: Proxy, data: bytes) -> bytes:
    """Send ``data`` on one TCP connection and read until the proxy closes it."""
    host, port = proxy.url.removeprefix("tcp://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_only_the_first_request_on_a_keep_alive_connection_is_forwarded(proxy):
    name = f"nc-proxytest-{proxy.tag}-pipelined"
    body = ('{"Name": "%s"}' % name).encode()
    answer = raw_exchange(proxy, b"GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n"
                                 b"POST /v1.41/networks/create HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nOK")
    assert answer.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in answer
    with pytest.raises(docker.errors.NotFound):
        docker_client().networks.get(name)


def test_a_chunked_request_body_is_refused_with_411(proxy):
    answer = raw_exchange(proxy, b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 Length Required\r\n")
    assert answer.endswith(b'{"message": "docker-proxy: chunked request bodies are not supported: '
                           b'send Content-Length"}')


def test_a_create_body_that_is_not_json_gets_400(proxy):
    answer = raw_exchange(proxy, b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"docker-proxy: request body is not valid JSON" in answer


def test_a_bare_line_feed_in_a_header_is_refused_since_the_engine_would_read_a_hidden_header(proxy):
    answer = raw_exchange(proxy, b"POST /v1.41/containers/x/start HTTP/1.1\r\nHost: x\r\n"
                                 b"X-Note: a\nContent-Length: 20\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"docker-proxy: control character (bare CR or LF) in the request head" in answer



NANOCLAW = [sys.executable, "-m", "services.cli.main"]
REPO = Path(__file__).resolve().parents[2]


def test_nanoclaw_deploy_docker_proxy_serves_until_sigterm(proxy):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NANOCLAW_DOCKER_PROXY__NETWORK": proxy.network,
           "NANOCLAW_DOCKER_PROXY__BIND_ROOTS": str(proxy.bind_root)}
    server = subprocess.Popen([*NANOCLAW, "deploy", "docker-proxy", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            result = subprocess.run(["docker", "-H", f"tcp://127.0.0.1:{port}", "network", "inspect", proxy.network,
                                     "--format", "{{.Internal}}"], capture_output=True, timeout=30)
            if result.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.2)
        assert result.stdout == b"true\n", result.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
    finally:
        server.kill()
        server.wait()
    assert b"docker-proxy listening on 127.0.0.1:%d" % port in server.stderr.read()

