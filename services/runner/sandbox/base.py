"""The sandbox backend interface, its data, and helpers shared by the backends.

A backend starts one agent process per run from a :class:`SandboxSpec` and hands back a
:class:`SandboxProcess`: the caller writes the input JSON to stdin and closes it, reads stdout/stderr as
streams, and waits for the exit code. Management (availability, stop, orphans) is on the backend.

Errors:
    SandboxUnavailable: the runtime cannot be used (no engine, no CLI, wrong network); the message says why.
    SandboxError: a management command failed (e.g. ``stop`` could neither stop nor kill).
    ValueError: a refused name, mount or environment (checked before anything is executed).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Mapping, Protocol, Sequence

ROLE_LABEL = "nanoclaw.role"
AGENT_ROLE = "agent"
RUN_ID_LABEL = "nanoclaw.run_id"
GROUP_LABEL = "nanoclaw.group"
AGENT_LABEL_FILTER = f"{ROLE_LABEL}={AGENT_ROLE}"

RUNTIME_REQUIRED = "Container runtime is required but failed to start"
"""v1's text (``ensureContainerRuntimeRunning``), kept so operators recognise it."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Valid sandbox names (fullmatch). Excludes ``;``, ``$()``, backticks, spaces, quotes (v1 #457)."""

# Environment names that look like credentials: none may reach a sandbox (docs/agent-runs.md: never an API key
# or token in the input, the environment or any mount). The per-run proxy token travels on stdin only.
# Matched at the end of the name so settings such as CLAUDE_CODE_MAX_OUTPUT_TOKENS stay allowed.
_SECRET_ENV = re.compile(r"(^|_)(API_?KEY|ACCESS_KEY|PRIVATE_KEY|SECRET_KEY|TOKEN|SECRET|PASSWORD|PASSWD|"
                         r"CREDENTIALS?)$", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SandboxUnavailable(RuntimeError):
    """The sandbox runtime cannot be used; the message names the runtime and the cause."""


class SandboxError(RuntimeError):
    """A management command failed; the message carries the command's error output."""


def container_name(folder: str, now_ms: int) -> str:
    """v1 §9.1: ``nanoclaw-<folder, every char outside [A-Za-z0-9-] → '-'>-<ms since epoch>``."""
    return f"nanoclaw-{re.sub(r'[^A-Za-z0-9-]', '-', folder)}-{now_ms}"


def user_ids(user: str) -> tuple[int, int]:
    """``"1000:1000"`` → ``(1000, 1000)``; ``"1000"`` → ``(1000, 1000)`` (the group defaults to the uid)."""
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe sandbox name, else raise ``ValueError("Invalid container name: …")``."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"Invalid container name: {name!r}")
    return name


@dataclass(frozen=True)
class Mount:
    """A bind mount. ``host``: absolute host path (must exist); ``container``: absolute path in the sandbox.

    Raises:
        ValueError: a relative path, ``..``, or a ``,``/``:``/newline (they would split the ``--mount`` or
            ``-v`` option and inject options, v1 §17.2).
    """

    host: str
    container: str
    read_only: bool = True

    def __post_init__(self) -> None:
        for what, p in (("host", str(self.host)), ("container", self.container)):
            if not p.startswith("/") or ".." in PurePosixPath(p).parts:
                raise ValueError(f"mount {what} path must be absolute without '..': {p!r}")
            if any(c in p for c in ",:\n\r\0"):
                raise ValueError(f"mount {what} path contains ',', ':' or a control character: {p!r}")
        object.__setattr__(self, "host", str(self.host))


@dataclass(frozen=True)
class Limits:
    """Resource limits: ``memory`` (docker size, e.g. ``1g``; swap pinned to it), ``cpus`` (cores),
    ``pids`` (processes), ``tmp_size`` (``/tmp`` tmpfs size)."""

    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 256
    tmp_size: str = "64m"


@dataclass(frozen=True)
class SandboxSpec:
    """One sandbox to start.

    Args:
        name: see :func:`container_name`; validated with :func:`check_name`.
        image: image reference (ignored by the process backend).
        mounts: bind mounts; the process backend maps container paths to these host paths instead.
        env: plain settings only; names that look like credentials are refused (``ValueError``).
        labels: extra labels (the backend adds ``nanoclaw.role=agent``; use ``nanoclaw.run_id``/``nanoclaw.group``).
        workdir: container working directory (``/workspace/group``).
        user: ``uid:gid``; None = the backend's policy user.
        limits: None = the backend's policy limits.
        command: docker/apple: arguments after the image (replace the image CMD); process: the whole argv.
    """

    name: str
    image: str
    mounts: Sequence[Mount] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = "/workspace/group"
    user: str | None = None
    limits: Limits | None = None
    command: Sequence[str] = ()

    def __post_init__(self) -> None:
        check_name(self.name)
        for key, value in self.env.items():
            if not _ENV_NAME.fullmatch(key) or "\0" in str(value):
                raise ValueError(f"invalid environment variable name or value: {key!r}")
            if _SECRET_ENV.search(key):
                raise ValueError(f"refusing to pass {key!r} into a sandbox: credentials never enter the environment")
        for key in self.labels:
            if key == ROLE_LABEL:
                raise ValueError(f"label {ROLE_LABEL!r} is set by the backend")
        targets = [m.container for m in self.mounts]
        if len(targets) != len(set(targets)):
            raise ValueError(f"two mounts share a container path: {targets}")

    def host_path_of(self, container_path: str) -> str | None:
        """The host path mounted at exactly ``container_path``, or None."""
        return next((m.host for m in self.mounts if m.container == container_path), None)


class SandboxProcess(Protocol):
    """A started sandbox. ``argv``: what was executed (for the run log); ``stdout``/``stderr``: readers."""

    name: str
    argv: list[str]
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader

    async def send_input(self, data: bytes) -> None:
        """Write ``data`` to stdin, then close it (the EOF tells the agent the input is complete)."""

    async def wait(self) -> int:
        """Wait for the process to exit; returns its exit code (negative: killed by that signal)."""

    def kill(self) -> None:
        """SIGKILL the local process (for docker: the CLI client; the container is stopped with ``stop``)."""

    @property
    def returncode(self) -> int | None: ...


class SandboxBackend(Protocol):
    """One sandbox runtime. All methods are coroutines; blocking clients run in threads."""

    kind: str

    async def ensure_available(self) -> None:
        """Raise :class:`SandboxUnavailable` (``"Container runtime is required but failed to start: <cause>"``)."""

    async def run(self, spec: SandboxSpec) -> SandboxProcess:
        """Start the sandbox. Raises OSError (e.g. missing CLI) when it cannot be spawned."""

    async def stop(self, name: str, grace_s: float) -> None:
        """Stop gracefully (SIGTERM), kill after ``grace_s``. An already gone sandbox is not an error.
        Raises ``ValueError("Invalid container name: …")`` without executing anything, or SandboxError."""

    async def list_names(self, label: str) -> list[str]:
        """Names of this runtime's sandboxes carrying ``label`` (``key=value``), running or not."""

    async def remove_orphans(self) -> list[str]:
        """Stop sandboxes left by an earlier runner; returns the names stopped. Failures are warnings."""

    def host_owner(self) -> tuple[int, int] | None:
        """The host ``(uid, gid)`` the sandbox user's files belong to, to which the runner hands the group's
        writable directories; None: hand them to no one (the agent runs as the runner's own user)."""


class ExecProcess:
    """:class:`SandboxProcess` over an ``asyncio.subprocess.Process`` (all three backends spawn one)."""

    def __init__(self, name: str, argv: list[str], proc: asyncio.subprocess.Process) -> None:
        self.name, self.argv, self._proc = name, argv, proc
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout, self.stderr = proc.stdout, proc.stderr

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def send_input(self, data: bytes) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            await stdin.drain()
        finally:
            stdin.close()

    async def wait(self) -> int:
        return await self._proc.wait()

    def kill(self) -> None:
        if self._proc.returncode is None:
            try:
                self._proc.kill()
            except ProcessLookupError:  # exited between the check and the signal
                pass


async def spawn(name: str, argv: list[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
                new_session: bool = False) -> ExecProcess:
    """Start ``argv`` with piped stdin/stdout/stderr. Raises OSError (FileNotFoundError: no such program)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=cwd, env=dict(env) if env is not None else None, start_new_session=new_session)
    return ExecProcess(name, list(argv), proc)


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class CommandExecutor(Protocol):
    """Runs a management command to completion. Raises OSError when it cannot start, TimeoutError after
    ``timeout_s`` seconds (the command is killed)."""

    async def __call__(self, argv: Sequence[str], *, timeout_s: float) -> CommandResult: ...


async def exec_command(argv: Sequence[str], *, timeout_s: float) -> CommandResult:
    """The real :class:`CommandExecutor`: no shell, output decoded as UTF-8 (errors replaced)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    return CommandResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


async def stop_then_kill(executor: CommandExecutor, cli: str, name: str, grace_s: float,
                         gone: Sequence[str]) -> None:
    """``<cli> stop -t <grace> <name>``, then ``<cli> kill <name>`` if the stop failed or hung. Output containing
    one of ``gone`` means the sandbox no longer exists: success.

    Raises:
        ValueError: ``Invalid container name`` (nothing executed). SandboxError: neither worked.
    """
    check_name(name)
    grace = max(0, int(grace_s))

    async def attempt(argv: list[str], timeout_s: float) -> CommandResult:
        try:
            return await executor(argv, timeout_s=timeout_s)
        except (OSError, TimeoutError) as exc:
            return CommandResult(-1, "", repr(exc))

    stopped = await attempt([cli, "stop", "-t", str(grace), name], grace + 30)
    if stopped.returncode == 0 or any(g in stopped.stderr for g in gone):
        return
    logging.getLogger(__name__).warning("%s stop %s failed (%s); killing", cli, name, stopped.stderr.strip())
    killed = await attempt([cli, "kill", name], 30)
    if killed.returncode != 0 and not any(g in killed.stderr for g in gone):
        raise SandboxError(f"could not stop or kill {name}: {killed.stderr.strip()}")
