"""The runner's host-side file operations on trees an agent can write (issue 20 §2): nothing it plants there (a
symlink to a host directory, a FIFO, a socket) makes the host write, create or chown outside those trees. The
runner service on a real nats-server with per-run users; the agent is the protocol script of
test_runner_service, run by the process backend (fast; the same host code runs for containers)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from services.harness.emit import append_emit
from services.harness.safepath import UnsafePath
from services.runner.mount_allowlist import MountAllowlistLoader
from services.runner.mounts import RunnerPaths, build_mounts, prepare_dirs
from services.runner.sandbox.base import Mount, SandboxSpec
from services.runner.sandbox.process import link_extras
from tests.bus import events_of, running
from tests.hostpaths import decoy, snapshot
from tests.runner.test_runner_service import agent_script, build_with, bus, close, dispatch, server  # noqa: F401 (fixtures)
from tests.support import eventually, has_at_least


async def finished(store, n: int) -> dict:
    await eventually(lambda: has_at_least(events_of(store, "AgentRunFinished"), n), timeout=60)
    return {f.run_id: f for f in await events_of(store, "AgentRunFinished")}


async def test_run_logs_are_written_outside_the_group_folder_so_a_planted_logs_symlink_is_never_followed(
        server, tmp_path, agent_script):  # noqa: F811
    host_dir = decoy(tmp_path / "host-dir")
    before = snapshot(host_dir)
    group = tmp_path / "data" / "groups" / "shop"
    group.mkdir(parents=True)
    (group / "logs").symlink_to(host_dir, target_is_directory=True)  # the agent's take-over attempt
    nc, store, ctx = await bus(server, tmp_path)
    async with running(build_with(agent_script), ctx):
        await append_emit(store, dispatch("r1"), source="queue", msg_id="d1")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
        await append_emit(store, close("r1"), source="queue", msg_id="c1")  # the queue's close of the idle run
        runs = await finished(store, 1)
    assert runs["r1"].status == "succeeded", runs["r1"]
    assert snapshot(host_dir) == before  # no run log, no new directory, no chown through the link
    [log] = (tmp_path / "data" / "logs" / "runs" / "shop").iterdir()
    assert log.name.startswith("container-") and "Status: succeeded" in log.read_text()
    assert os.readlink(group / "logs") == str(host_dir)  # the agent's own entry is left as it is
    await nc.close()


def plant_symlink(path: Path, host_dir: Path) -> None:
    path.symlink_to(host_dir, target_is_directory=True)


def plant_fifo(path: Path, host_dir: Path) -> None:
    os.mkfifo(path)


def plant_socket(path: Path, host_dir: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


async def test_a_session_dir_replaced_by_a_link_fifo_or_socket_fails_that_run_as_a_security_refusal(
        server, tmp_path, agent_script):  # noqa: F811
    # In a container `.claude` is a mount point the agent cannot replace; a process-mode agent (HOME is the
    # session dir) or anything else with write access to the session dir can. The runner must not mount, create
    # or chown through what it finds there, must say why, and must keep serving other groups.
    host_dir = decoy(tmp_path / "host-dir")
    before = snapshot(host_dir)
    planted = {"shop": plant_symlink, "cafe": plant_fifo, "deli": plant_socket}
    for folder, plant in planted.items():
        (tmp_path / "data" / "sessions" / folder).mkdir(parents=True)
        plant(tmp_path / "data" / "sessions" / folder / ".claude", host_dir)
    nc, store, ctx = await bus(server, tmp_path)
    async with running(build_with(agent_script), ctx):
        for i, folder in enumerate([*planted, "bakery"]):
            await append_emit(store, dispatch(f"r-{folder}", folder=folder), source="queue", msg_id=f"d{i}")
        await eventually(lambda: has_at_least(events_of(store, "AgentOutputProduced"), 1))
        await append_emit(store, close("r-bakery", folder="bakery"), source="queue", msg_id="c1")
        runs = await finished(store, 4)
    assert runs["r-bakery"].status == "succeeded"  # an untouched group still runs
    refusals = {r.group_folder: r for r in await events_of(store, "SandboxRequestRefused")}
    assert set(refusals) == set(planted)
    for folder, found in (("shop", "a symbolic link"), ("cafe", "a FIFO"), ("deli", "a socket")):
        run, refusal = runs[f"r-{folder}"], refusals[folder]
        assert run.status == "failed" and ".claude" in run.error and found in run.error, run
        assert (refusal.surface, refusal.service, refusal.run_id) == ("host_path", "runner", f"r-{folder}")
        assert ".claude" in refusal.operation and found in refusal.reason, refusal
    assert snapshot(host_dir) == before
    assert len(await events_of(store, "AgentRunStarted")) == 4  # every dispatch got its run: the queue is not stuck
    await nc.close()


# --- the directory preparation itself (no service) --------------------------------------------------------------

def test_preparing_dirs_as_root_chowns_only_the_two_mount_sources_never_a_planted_logs_link(tmp_path) -> None:
    # Issue 20 §2 as found: an agent replaced <group>/logs with a link to a host directory, and the next run's
    # preparation chowned that directory to the sandbox user (and the run log went into it).
    host_dir = decoy(tmp_path / "host-dir")
    before = snapshot(host_dir)
    paths = RunnerPaths.from_data_dir(tmp_path / "data")
    (paths.group_dir("shop")).mkdir(parents=True)
    (paths.group_dir("shop") / "logs").symlink_to(host_dir, target_is_directory=True)
    prepare_dirs("shop", paths, owner=(1000, 1000))
    assert snapshot(host_dir) == before
    assert os.geteuid() != 0 or paths.group_dir("shop").stat().st_uid == 1000


@pytest.mark.parametrize("planted", ["groups/shop", "sessions/shop", "sessions/shop/.claude"])
def test_a_link_in_place_of_a_mount_source_or_its_parent_is_refused_and_nothing_is_chowned(tmp_path,
                                                                                          planted: str) -> None:
    host_dir = decoy(tmp_path / "host-dir")
    before = snapshot(host_dir)
    paths = RunnerPaths.from_data_dir(tmp_path / "data")
    (tmp_path / "data" / planted).parent.mkdir(parents=True)
    (tmp_path / "data" / planted).symlink_to(host_dir, target_is_directory=True)
    with pytest.raises(UnsafePath, match=f"{planted.rsplit('/', 1)[1]!r} is a symbolic link, expected a directory"):
        prepare_dirs("shop", paths, owner=(1000, 1000))
    assert snapshot(host_dir) == before


def test_a_global_dir_that_is_a_link_is_not_mounted(tmp_path, caplog) -> None:
    host_dir = decoy(tmp_path / "host-dir")
    paths = RunnerPaths.from_data_dir(tmp_path / "data")
    prepare_dirs("main", paths)
    paths.global_dir().symlink_to(host_dir, target_is_directory=True)
    mounts = build_mounts("main", True, None, paths, MountAllowlistLoader(tmp_path / "no-allowlist.json"))
    assert "/workspace/global" not in {m.container for m in mounts}
    assert "is a symbolic link, not a directory: not mounted" in caplog.text


def test_the_process_backends_extra_dir_is_rebuilt_without_following_what_the_agent_left_there(tmp_path) -> None:
    # Process mode: HOME is <sessions>/<folder>, the agent's; the runner empties and refills HOME/workspace-extra.
    host_dir = decoy(tmp_path / "host-dir")
    before = snapshot(host_dir)
    home = tmp_path / "sessions" / "shop"
    home.mkdir(parents=True)
    spec = SandboxSpec(name="nanoclaw-shop-1", image="unused",
                       mounts=[Mount(str(host_dir), "/workspace/extra/ref/docs", read_only=True)])
    (home / "workspace-extra").symlink_to(host_dir, target_is_directory=True)  # planted: a link to the host
    extra = Path(link_extras(spec, str(home)))
    assert extra == home / "workspace-extra" and not extra.is_symlink()
    assert os.readlink(extra / "ref" / "docs") == str(host_dir)
    (extra / "ref" / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(extra / "ref" / "fifo")  # and a FIFO and a link to a host file inside it
    (extra / "host-file").symlink_to(host_dir / "host-secret.txt")
    link_extras(spec, str(home))
    assert sorted(p.name for p in extra.rglob("*")) == ["docs", "ref"]
    assert snapshot(host_dir) == before
