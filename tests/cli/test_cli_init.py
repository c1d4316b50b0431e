"""`nanoclaw init`: what the compose deployment needs besides identities (the runner's host directory and the
Docker socket's group for the API proxy). The identities themselves: tests/deploy/test_identities.py."""

from __future__ import annotations

import os
import socket

from tests.cli.test_cli import cli


def _env_file(path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def test_init_writes_the_runner_directory_and_the_socket_group_into_both_profiles(tmp_path):
    sock_path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        if os.geteuid() == 0:
            os.chown(sock_path, -1, 4242)
        result = cli(["init", "--dir", str(tmp_path / "d"), "--docker-socket", str(sock_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    for profile in ("single", "cluster"):
        env = _env_file(tmp_path / "d" / f"{profile}.env")
        assert env["NANOCLAW_RUNNER_DIR"] == str(tmp_path / "d" / "runner")
        assert env["NANOCLAW_DOCKER_SOCKET"] == str(sock_path)
        assert env["NANOCLAW_DOCKER_GID"] == str(sock_path.stat().st_gid)
    runner = (tmp_path / "d" / "runner").stat()
    if os.geteuid() == 0:  # the runner and its sandboxes are uid 1000
        assert (runner.st_uid, runner.st_gid, env["NANOCLAW_DOCKER_GID"]) == (1000, 1000, "4242")


def test_init_without_a_docker_socket_says_so_and_writes_nothing(tmp_path):
    result = cli(["init", "--dir", str(tmp_path / "d"), "--docker-socket", str(tmp_path / "missing.sock")], tmp_path)
    assert result.returncode == 2
    assert "cannot read the Docker socket" in result.stdout + result.stderr and "--docker-socket" in result.stdout + result.stderr
    assert not (tmp_path / "d").exists()
