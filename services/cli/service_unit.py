"""The files that make the operating system run `nanoclaw up` as a service of the logged-in user: a systemd user
unit (Linux) or a launchd agent (macOS). Pure functions of a :class:`UnitSpec`, so tests check the text.

Both restart `up` when it fails (not when it was stopped on purpose) and keep its console output where
docs/deploy.md says: the journal (``journalctl --user -u nanoclaw``) on Linux, ``<data_dir>/logs/launchd.out.log``
and ``launchd.err.log`` on macOS; `up` itself writes JSON lines to ``<data_dir>/logs/nanoclaw.log`` on both.

Why a launchd agent: the nanoclaw-py PRD asks for one (NanoClaw v1 ships ``launchd/com.nanoclaw.plist``); why
a *user* unit on Linux: `up` runs sandboxes with the user's Docker access and keeps state in the user's data
directory, so it needs no root.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

LABEL = "com.nanoclaw.bus"
"""The launchd label (and the plist's file name)."""
RESTART_DELAY_S = 5
"""Seconds between a failure of `up` and its restart (systemd ``RestartSec``, launchd ``ThrottleInterval``)."""
STOP_TIMEOUT_S = 60
"""Seconds `up` has to stop gracefully (finish in-flight messages, stop sandboxes) before it is killed."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UnitError(ValueError):
    """The unit cannot be written as asked (the message names the problem)."""


@dataclass(frozen=True)
class UnitSpec:
    """What the unit runs. ``command``: the argv of `nanoclaw up` (absolute paths); ``workdir``: its working
    directory (where a relative ``config.yml`` and ``data/`` are); ``log_dir``: ``<data_dir>/logs``;
    ``env``: extra environment (PATH, so the Docker CLI is found as in the user's shell)."""

    name: str
    command: tuple[str, ...]
    workdir: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise UnitError(f"service name {self.name!r}: use letters, digits, '.', '_' or '-' (at most 64)")


def nanoclaw_command() -> tuple[str, ...]:
    """The argv that starts this installation's CLI: the ``nanoclaw`` script beside this Python (a virtualenv),
    else this Python running the CLI module."""
    script = Path(sys.executable).parent / "nanoclaw"
    if script.exists():
        return (str(script),)
    return (sys.executable, "-m", "services.cli.main")


def up_spec(*, name: str, workdir: Path, data_dir: Path, config: Path | None, credentials: Path | None) -> UnitSpec:
    """The spec for `nanoclaw up` with absolute paths (a service manager starts in ``/`` or ``$HOME``)."""
    workdir = workdir.resolve()
    command = [*nanoclaw_command(), "up"]
    if config is not None:
        command += ["--config", str(config.resolve())]
    if credentials is not None:
        command += ["--credentials", str(credentials.resolve())]
    data = data_dir if data_dir.is_absolute() else workdir / data_dir
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "PYTHONUNBUFFERED": "1"}
    return UnitSpec(name=name, command=tuple(command), workdir=workdir, log_dir=data / "logs", env=env)


def _systemd_quote(word: str) -> str:
    """One word of a systemd command line or assignment: ``%`` doubled (specifiers), quoted when it holds
    whitespace, quotes or backslashes (systemd.syntax(7): C-style escapes inside double quotes)."""
    word = word.replace("%", "%%")
    if word and not re.search(r'[\s"\'\\;]', word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _no_newline(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise UnitError(f"{what} contains a line break: {value!r}")
    return value


def systemd_unit(spec: UnitSpec) -> str:
    """The text of ``~/.config/systemd/user/<name>.service``. ``WorkingDirectory=`` takes the path as it is (no
    quotes, spaces allowed; only ``%`` doubled), command lines and ``Environment=`` take quoted words."""
    for word in (*spec.command, str(spec.workdir), *spec.env.values()):
        _no_newline(word, "a path or variable of the unit")
    exec_start = " ".join(_systemd_quote(w) for w in spec.command)
    env = "\n".join(f"Environment={_systemd_quote(f'{k}={v}')}" for k, v in spec.env.items())
    return f"""[Unit]
Description=NanoClaw Bus (nanoclaw up)
After=network.target

[Service]
Type=simple
WorkingDirectory={str(spec.workdir).replace('%', '%%')}
ExecStart={exec_start}
{env}
# Restart when `up` fails or is killed; a clean stop (systemctl --user stop) stays stopped.
Restart=on-failure
RestartSec={RESTART_DELAY_S}
# `up` stops gracefully on SIGTERM: in-flight messages finish and are acked, sandboxes stop.
KillSignal=SIGTERM
TimeoutStopSec={STOP_TIMEOUT_S}
# Console output goes to the journal (journalctl --user -u {spec.name}); `up` also writes JSON lines to
# {spec.log_dir}/nanoclaw.log.
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=default.target
"""


def launchd_plist(spec: UnitSpec) -> bytes:
    """The bytes of ``~/Library/LaunchAgents/com.nanoclaw.bus.plist`` (``plistlib`` escapes every string)."""
    return plistlib.dumps({
        "Label": LABEL if spec.name == "nanoclaw" else f"{LABEL}.{spec.name}",
        "ProgramArguments": list(spec.command),
        "WorkingDirectory": str(spec.workdir),
        "EnvironmentVariables": dict(spec.env),
        "RunAtLoad": True,
        # Restart only when `up` exits with a failure (or is killed), as systemd's Restart=on-failure.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": RESTART_DELAY_S,
        "ExitTimeOut": STOP_TIMEOUT_S,
        "StandardOutPath": str(spec.log_dir / "launchd.out.log"),
        "StandardErrorPath": str(spec.log_dir / "launchd.err.log"),
        "ProcessType": "Background",
    })


def unit_path(platform: str, name: str, home: Path | None = None) -> Path:
    """Where the unit goes: ``$XDG_CONFIG_HOME/systemd/user/<name>.service`` (default ``~/.config``) or
    ``~/Library/LaunchAgents/<label>.plist``.

    Raises:
        UnitError: an unsupported platform.
    """
    home = home or Path.home()
    if platform == "linux":
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        return base / "systemd" / "user" / f"{name}.service"
    if platform == "macos":
        label = LABEL if name == "nanoclaw" else f"{LABEL}.{name}"
        return home / "Library" / "LaunchAgents" / f"{label}.plist"
    raise UnitError(f"platform {platform!r}: supported are linux (systemd) and macos (launchd)")


def this_platform() -> str:
    return "macos" if sys.platform == "darwin" else "linux" if sys.platform.startswith("linux") else sys.platform


def render(platform: str, spec: UnitSpec) -> bytes:
    """The unit file's bytes for ``platform`` (``linux`` or ``macos``).

    Raises:
        UnitError: unsupported platform, or a path holding a line break.
    """
    if platform == "linux":
        return systemd_unit(spec).encode()
    if platform == "macos":
        return launchd_plist(spec)
    raise UnitError(f"platform {platform!r}: supported are linux (systemd) and macos (launchd)")


def manager_commands(platform: str, path: Path, name: str, *, install: bool) -> list[list[str]]:
    """The service-manager calls that (un)load the unit: ``systemctl --user`` or ``launchctl``."""
    if platform == "linux":
        if install:
            return [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", f"{name}.service"]]
        return [["systemctl", "--user", "disable", "--now", f"{name}.service"], ["systemctl", "--user", "daemon-reload"]]
    domain = f"gui/{os.getuid()}"
    return [["launchctl", "bootstrap", domain, str(path)]] if install else [["launchctl", "bootout", domain, str(path)]]


def manager_available(platform: str) -> bool:
    return shutil.which("systemctl" if platform == "linux" else "launchctl") is not None
