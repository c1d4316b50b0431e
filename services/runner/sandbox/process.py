"""Trusted local mode: the agent runs as a plain host process, with NO isolation.

Only with ``runner.backend: process`` (never as a fallback when Docker is missing); constructing the backend
logs a loud warning. The agent runs as ``sys.executable -m sandbox.agent`` (or ``spec.command``) in its own
process group, so ``stop`` reaches the Claude CLI it spawns too.

Host paths instead of container paths. The spec's mounts say which host path stands for which container path;
the agent receives them in its environment (contract with ``sandbox.agent``):

| Variable | Value |
|---|---|
| ``NANOCLAW_SANDBOX`` | ``process`` |
| ``NANOCLAW_WORKSPACE_GROUP`` | host path of ``/workspace/group`` (also the cwd) |
| ``NANOCLAW_WORKSPACE_GLOBAL`` | host path of ``/workspace/global`` (unset when not mounted) |
| ``NANOCLAW_WORKSPACE_EXTRA`` | a directory standing for ``/workspace/extra``: entry ``<name>`` is a symlink to |
|  | the host path of ``/workspace/extra/<name>``. Rebuilt at every run (``$HOME/workspace-extra``; a |
|  | temporary directory when there is no session mount) |
| ``NANOCLAW_PATH_MAP`` | JSON object ``{"<container path>": "<host path>"}`` for every mount |
| ``HOME`` | parent of the host path of ``/home/agent/.claude`` (so ``~/.claude`` is the group's session dir) |

The environment is built from scratch (PATH, LANG, TZ, PYTHONPATH plus ``spec.env``): the runner's own
environment may hold credentials and is never inherited. Read-only mounts are not enforced in this mode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from services.harness.safepath import SafeDir
from services.runner.sandbox.base import (AGENT_ROLE, ROLE_LABEL, ExecProcess, SandboxSpec, SandboxUnavailable,
                                          check_name, spawn)

logger = logging.getLogger(__name__)

GROUP, GLOBAL, EXTRA, CLAUDE = "/workspace/group", "/workspace/global", "/workspace/extra/", "/home/agent/.claude"
REPO_ROOT = Path(__file__).resolve().parents[3]
_PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ")


def process_env(spec: SandboxSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The agent's environment for ``spec`` (see the module table) except ``NANOCLAW_WORKSPACE_EXTRA``, which
    :func:`link_extras` provides. ``base``: the host env to pick PATH etc. from (default ``os.environ``)."""
    base = os.environ if base is None else base
    env = {k: base[k] for k in _PASSED_THROUGH if k in base}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(spec.env)
    path_map = {m.container: m.host for m in spec.mounts}
    env["NANOCLAW_SANDBOX"] = "process"
    env["NANOCLAW_PATH_MAP"] = json.dumps(path_map, sort_keys=True)
    if GROUP in path_map:
        env["NANOCLAW_WORKSPACE_GROUP"] = path_map[GROUP]
    if GLOBAL in path_map:
        env["NANOCLAW_WORKSPACE_GLOBAL"] = path_map[GLOBAL]
    if CLAUDE in path_map:
        env["HOME"] = str(Path(path_map[CLAUDE]).parent)
    return env


def link_extras(spec: SandboxSpec, home: str | None) -> str:
    """Build the directory of symlinks standing for ``/workspace/extra`` and return its path. It is emptied
    first, so a mount dropped from the group's config disappears. HOME is the agent's to change: everything in
    it is removed and created through :mod:`services.harness.safepath` (opened beneath HOME's parent, the
    sessions dir), so nothing the agent planted there is followed."""
    extras = {m.container[len(EXTRA):]: m.host for m in spec.mounts if m.container.startswith(EXTRA)}
    if home is None:
        root = SafeDir.open_root(tempfile.mkdtemp(prefix=f"{spec.name}-extra-"))
    else:
        home_path = Path(home)
        with SafeDir.open_root(home_path.parent, create=True) as sessions, \
                sessions.subdir(home_path.name, create=True) as agent_home:
            agent_home.remove("workspace-extra")
            root = agent_home.subdir("workspace-extra", create=True)
    with root:
        for name, host in extras.items():
            if "/" in name:
                root.subdir(name.rpartition("/")[0], create=True).close()
            root.symlink(name, host)
        return root.path


class ProcessBackend:
    """Args: ``agent_argv``: the default agent command (``python -m sandbox.agent``); ``spec.command`` overrides it.
    ``base_env``: host environment to take PATH/LANG/TZ from (default ``os.environ``)."""

    kind = "process"

    def __init__(self, *, agent_argv: Sequence[str] = (sys.executable, "-m", "sandbox.agent"),
                 base_env: Mapping[str, str] | None = None) -> None:
        self.agent_argv, self.base_env = list(agent_argv), base_env
        self._running: dict[str, tuple[ExecProcess, Mapping[str, str]]] = {}
        logger.warning("runner.backend=process: agents run as host processes WITHOUT ANY SANDBOX (no container, "
                       "no read-only mounts, full host network and file access). Use only on a trusted machine.")

    async def ensure_available(self) -> None:
        if shutil.which(self.agent_argv[0]) is None:
            raise SandboxUnavailable(f"agent interpreter {self.agent_argv[0]!r} is not executable")

    async def run(self, spec: SandboxSpec) -> ExecProcess:
        """Spawn the agent in its own process group, cwd = the host group folder (else ``spec.workdir`` mapped)."""
        argv = list(spec.command) or self.agent_argv
        cwd = spec.host_path_of(spec.workdir or GROUP) or spec.host_path_of(GROUP)
        env = process_env(spec, self.base_env)
        env["NANOCLAW_WORKSPACE_EXTRA"] = link_extras(spec, env.get("HOME"))
        proc = await spawn(spec.name, argv, cwd=cwd, env=env, new_session=True)
        self._running[spec.name] = (proc, {**spec.labels, ROLE_LABEL: AGENT_ROLE})
        return proc

    def host_owner(self) -> tuple[int, int] | None:
        """None: the agent is the runner's own user; nothing is handed over."""
        return None

    async def stop(self, name: str, grace_s: float) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``. Unknown or exited names are fine."""
        check_name(name)
        entry = self._running.pop(name, None)
        if entry is None:
            return
        proc = entry[0]
        if proc.returncode is not None:  # exited and reaped: its pid (and group id) may already be reused
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except asyncio.TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)

    async def list_names(self, label: str) -> list[str]:
        key, _, value = label.partition("=")
        return [n for n, (p, labels) in self._running.items()
                if p.returncode is None and labels.get(key) == value]

    async def remove_orphans(self) -> list[str]:
        """Nothing to find: host processes of an earlier runner are not tracked across restarts."""
        self._running = {n: e for n, e in self._running.items() if e[0].returncode is None}
        return []


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the agent leads its own group (start_new_session)
    except ProcessLookupError:
        pass
