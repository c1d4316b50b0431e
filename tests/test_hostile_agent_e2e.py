"""A hostile agent on the real Docker backend (issue 20 §2): the whole system as ``nanoclaw up`` runs it, the real
agent image and claude-agent-sdk CLI, and a stub model that drives the agent's Bash tool to plant, in every
agent-writable place the host touches (the group folder, ``.claude``, and ``global`` as the main group), links
to host directories and files and to the data dir, FIFOs, sockets, a 1 TiB sparse file, names with newlines and
control characters, a hardlink attempt, and the ``logs`` link of the reported take-over. Then a turn on that
tree, a runner restart with a run in flight (the recovery path), a session dir swapped for a link between runs
(what a process-mode agent can do: the host must refuse it and record a security event), and the group's
removal. Throughout: no host path outside the agents' trees changes (type, owner, mode; the decoy host dir also
content), and other groups keep being served. A missing engine fails this test (never a skip)."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from pathlib import Path

import pytest

from events.repository import Repository
from services.router.groups import RegisteredGroup
from tests.agent_path import http_port, system
from tests.bus import events_of
from tests.docker_support import agent_image, docker_client, sandbox_network as own_network
from tests.gateway.test_gateway_service import post
from tests.hostpaths import Entry, decoy, snapshot
from tests.router.test_router_service import register
from tests.sandbox import all_text
from tests.stub_anthropic import StubAnthropic
from tests.support import eventually

pytestmark = pytest.mark.docker

PLANT = r"""
set -u
H={host}; D={data}
plant() {{
  d=$1
  ln -sfn "$H" "$d/to-host-dir"; ln -sfn "$H/host-secret.txt" "$d/to-host-file"
  ln -sfn "$D" "$d/to-data-dir"; ln -sfn "$D/logs" "$d/to-run-logs"; ln -sfn / "$d/to-root"
  mkfifo "$d/fifo"
  python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$d/socket"
  truncate -s 1T "$d/huge-sparse.bin"
  ln /etc/hostname "$d/hardlink" 2>/dev/null || echo "no hardlink across mounts in $d"
  mkdir -p "$d/"$'new\nline' && touch "$d/"$'ctl\x01\x1b[31m\r.txt'
}}
rm -rf /workspace/group/logs && ln -s "$H" /workspace/group/logs
for d in /workspace/group /home/agent/.claude /workspace/global; do plant "$d"; done
echo planted
"""


class HostileModel:
    """The stub model's script: a prompt with PLANT gets a Bash tool call running :data:`PLANT`; the first
    prompt with STALL hangs until :attr:`release` is set (a run in flight across a restart); after a tool
    result, or for anything else, a short text."""

    def __init__(self, plant: str) -> None:
        self.plant, self.release, self.stalled = plant, threading.Event(), threading.Event()

    def __call__(self, body: dict) -> tuple:
        last = [m for m in body["messages"] if m["role"] == "user"][-1]  # the CLI may append a system message
        if isinstance(last["content"], list) and any(b.get("type") == "tool_result" for b in last["content"]):
            return ("text", "done")
        text = all_text(last)
        if "PLANT" in text:
            return ("tool_use", "Bash", {"command": self.plant, "description": "plant"})
        if "STALL" in text and not self.stalled.is_set():
            self.stalled.set()
            self.release.wait(120)
            return ("text", "too late")
        return ("text", "ok")


@pytest.fixture
def sandbox_network():
    """A network of this test's own; afterwards the engine and the host firewall as they were."""
    with own_network("nanoclaw-hostile") as settings:
        yield settings


def host_changes(before: dict[str, Entry], after: dict[str, Entry], host_dir: str) -> list[str]:
    """What changed outside the agents' trees: a vanished path, a changed type/owner/mode; anything at all in
    ``host_dir`` (content too); a new symlink, or a new path owned by the sandbox user (uid 1000), elsewhere
    (the system's own new files, such as run logs and read models, are the runner's, never the sandbox's)."""
    problems = []
    for path, was in before.items():
        now = after.get(path)
        if now is None:
            problems.append(f"{path} vanished")
        elif now[:4] != was[:4] or ((path == host_dir or path.startswith(host_dir + "/")) and now != was):
            problems.append(f"{path} changed: {was} -> {now}")
    for path in sorted(after.keys() - before.keys()):
        kind, uid = after[path][0], after[path][1]
        if path.startswith(host_dir + "/") or kind == "link" or uid == 1000:
            problems.append(f"{path} appeared: {after[path]}")
    return problems


async def finished_runs(store, folder: str) -> list:
    return [f for f in await events_of(store, "AgentRunFinished") if f.group_folder == folder]


async def turn(host, store, chat: str, text: str, *, runs_before: int) -> object:
    """Post ``text`` to ``chat`` and return the group's next finished run."""
    status, _ = await post(http_port(host), {"chat": chat, "sender": "eve", "text": text})
    assert status == 202
    runs: list = []

    async def done() -> bool:
        runs[:] = await finished_runs(store, chat)
        return len(runs) > runs_before
    await eventually(done, timeout=180, detail=runs)
    return runs[runs_before]


async def test_a_hostile_agent_changes_nothing_on_the_host_outside_its_own_trees(tmp_path: Path,
                                                                                 sandbox_network) -> None:
    data, host_dir = tmp_path / "data", decoy(tmp_path / "host-dir")
    trees = [data / "groups" / "hq", data / "groups" / "global", data / "sessions" / "hq",
             data / "groups" / "shop", data / "sessions" / "shop" / ".claude", tmp_path / "nats"]
    model = HostileModel(PLANT.format(host=host_dir, data=data))
    image = agent_image()
    try:
        with StubAnthropic(script=model) as stub:
            async with system(tmp_path, stub, backend="docker", image=image, runner=sandbox_network,
                              queue={"idle_timeout_ms": 0}) as (host, store, _):
                await register(store, jid="http:hq", folder="hq", requires_trigger=False, is_main=True)
                await register(store, jid="http:shop", folder="shop", requires_trigger=False)
                (data / "groups" / "global").mkdir(parents=True)
                os.chown(data / "groups" / "global", 1000, 1000)  # the operator lets main write the shared memory
                assert (await turn(host, store, "shop", "hello", runs_before=0)).status == "succeeded"
                before = snapshot(tmp_path, skip=trees)

                # 1. A turn in which the agent plants everything.
                planted = await turn(host, store, "hq", "PLANT please", runs_before=0)
                assert planted.status == "succeeded", planted
                group = data / "groups" / "hq"
                assert os.readlink(group / "logs") == str(host_dir)  # the attempt really happened, in every tree
                for tree in (group, data / "sessions" / "hq" / ".claude", data / "groups" / "global"):
                    assert stat.S_ISFIFO((tree / "fifo").lstat().st_mode) and (tree / "new\nline").is_dir()
                    assert (tree / "huge-sparse.bin").stat().st_size == 1 << 40
                    assert os.readlink(tree / "to-host-dir") == str(host_dir)
                os.link(host_dir / "host-secret.txt", group / "hardlink-to-host")  # what a shared filesystem allows
                assert host_changes(before, snapshot(tmp_path, skip=trees), "host-dir") == []

                # 2. A run in flight when the runner stops.
                status, _ = await post(http_port(host), {"chat": "hq", "sender": "eve", "text": "STALL now"})
                assert status == 202
                await eventually(model.stalled.is_set, timeout=120)
            model.release.set()

            # 3. Restart: recovery finishes the interrupted run; the retry runs on the planted tree.
            async with system(tmp_path, stub, backend="docker", image=image, runner=sandbox_network,
                              queue={"idle_timeout_ms": 0}) as (host, store, _):
                async def retried() -> bool:
                    runs = await finished_runs(store, "hq")
                    return any(r.interrupted for r in runs) and runs[-1].status == "succeeded" and not runs[-1].interrupted
                await eventually(retried, timeout=180, detail=model.stalled)
                assert host_changes(before, snapshot(tmp_path, skip=trees), "host-dir") == []

                # 4. The session dir swapped for a link to the host between runs: refused, recorded, not followed.
                claude = data / "sessions" / "hq" / ".claude"
                claude.rename(claude.with_name(".claude-moved"))
                claude.symlink_to(host_dir, target_is_directory=True)
                runs_before = len(await finished_runs(store, "hq"))
                refused = await turn(host, store, "hq", "hello again", runs_before=runs_before)
                assert refused.status == "failed" and "'.claude' is a symbolic link" in refused.error, refused

                # 5. The group is removed; another group is served afterwards (also the barrier for "nothing else").
                repo = Repository(store, "test")
                hq = await repo.get(RegisteredGroup, "http:hq")
                hq.remove()
                await repo.save(hq)
                shop_runs = len(await finished_runs(store, "shop"))
                assert (await turn(host, store, "shop", "still there?", runs_before=shop_runs)).status == "succeeded"
                refusals = await events_of(store, "SandboxRequestRefused")
                after = snapshot(tmp_path, skip=trees)  # while running: SQLite removes its -wal files at close
    finally:
        model.release.set()
        for top, _, files in os.walk(data):  # links are not descended: the agent's, to the host, stay unfollowed
            if "huge-sparse.bin" in files:  # sparse, but 1 TiB to anything that copies tmp dirs
                os.unlink(os.path.join(top, "huge-sparse.bin"))

    assert host_changes(before, after, "host-dir") == []
    assert refusals and {(r.service, r.group_folder, r.surface) for r in refusals} == {("runner", "hq", "host_path")}
    assert all("'.claude' is a symbolic link" in r.reason for r in refusals)
    logs = sorted(p.name for p in (data / "logs" / "runs" / "hq").iterdir())
    assert len(logs) >= 3 and all(name.startswith("container-") for name in logs)  # the host's run logs, its own dir
    assert group.is_dir() and os.readlink(group / "logs") == str(host_dir)  # removal keeps the folder, untouched
