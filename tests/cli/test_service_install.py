"""`nanoclaw service install|uninstall`: the systemd user unit and the launchd agent that run `nanoclaw up`
(issue 16, "Run as a system service"). Checked with `systemd-analyze verify` (which parses the unit and checks
that ExecStart is executable) when it is installed, and structurally in any case."""

from __future__ import annotations

import plistlib
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from services.cli.service_unit import UnitError, UnitSpec, launchd_plist, systemd_unit
from tests.cli.test_cli import cli

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def _unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(f"{section}.{key}", []).append(value)
    return values


def _verify(unit: Path) -> None:
    if SYSTEMD_ANALYZE:
        result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True)
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_install_writes_a_systemd_user_unit_that_runs_up_and_restarts_it_on_failure(tmp_path):
    (tmp_path / "config.yml").write_text("assistant_name: Andy\n")
    home = tmp_path / "home"
    result = cli(["service", "install", "--platform", "linux", "--no-start"], tmp_path, _env(home))
    assert result.returncode == 0, result.stderr
    unit = home / ".config" / "systemd" / "user" / "nanoclaw.service"
    text = unit.read_text()
    values = _unit_values(text)
    command = shlex.split(values["Service.ExecStart"][0])
    assert Path(command[0]).is_absolute() and command[0].endswith("nanoclaw") or command[1:3] == ["-m", "services.cli.main"]
    assert command[-3:] == ["up", "--config", str(tmp_path / "config.yml")]
    assert values["Service.WorkingDirectory"] == [str(tmp_path)]
    assert values["Service.Restart"] == ["on-failure"] and values["Service.KillSignal"] == ["SIGTERM"]
    assert values["Service.StandardOutput"] == ["journal"] and values["Install.WantedBy"] == ["default.target"]
    assert f"{tmp_path}/data/logs/nanoclaw.log" in text  # where the docs say `up` writes its log
    assert (tmp_path / "data" / "logs").is_dir()
    assert "systemctl --user daemon-reload" in " ".join(result.stderr.split())  # --no-start: says what to run
    _verify(unit)


def test_a_path_with_spaces_and_percent_signs_is_quoted_so_systemd_reads_it_back(tmp_path):
    workdir = tmp_path / "my 100% dir"
    workdir.mkdir()
    program = workdir / "nanoclaw"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    spec = UnitSpec(name="nanoclaw", command=(str(program), "up"), workdir=workdir, log_dir=workdir / "data" / "logs")
    unit = tmp_path / "nanoclaw.service"
    unit.write_text(systemd_unit(spec))
    exec_start = _unit_values(unit.read_text())["Service.ExecStart"][0]
    assert shlex.split(exec_start.replace("%%", "%")) == [str(program), "up"]
    _verify(unit)


def test_a_path_with_a_line_break_is_refused_rather_than_written_into_the_unit(tmp_path):
    spec = UnitSpec(name="nanoclaw", command=("/bin/true", "up\nExecStartPre=/bin/evil"), workdir=tmp_path, log_dir=tmp_path)
    with pytest.raises(UnitError, match="line break"):
        systemd_unit(spec)
    with pytest.raises(UnitError, match="service name"):
        UnitSpec(name="../x", command=("/bin/true",), workdir=tmp_path, log_dir=tmp_path)


def test_install_on_macos_writes_a_launchd_agent_that_restarts_up_on_failure_and_logs_to_the_data_dir(tmp_path):
    home = tmp_path / "home"
    result = cli(["service", "install", "--platform", "macos", "--no-start"], tmp_path, _env(home))
    assert result.returncode == 0, result.stderr
    plist = plistlib.loads((home / "Library" / "LaunchAgents" / "com.nanoclaw.bus.plist").read_bytes())
    assert plist["Label"] == "com.nanoclaw.bus"
    assert plist["ProgramArguments"][-1] == "up" and Path(plist["ProgramArguments"][0]).is_absolute()
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    assert plist["WorkingDirectory"] == str(tmp_path)
    assert plist["StandardOutPath"] == str(tmp_path / "data" / "logs" / "launchd.out.log")
    assert plist["StandardErrorPath"] == str(tmp_path / "data" / "logs" / "launchd.err.log")
    if shutil.which("plutil"):
        assert subprocess.run(["plutil", "-lint", str(home / "Library" / "LaunchAgents" / "com.nanoclaw.bus.plist")]).returncode == 0


def test_launchd_strings_are_escaped(tmp_path):
    spec = UnitSpec(name="nanoclaw", command=("/opt/<nc>&/nanoclaw", "up"), workdir=tmp_path, log_dir=tmp_path)
    assert plistlib.loads(launchd_plist(spec))["ProgramArguments"][0] == "/opt/<nc>&/nanoclaw"


def test_dry_run_prints_the_unit_and_writes_nothing(tmp_path):
    home = tmp_path / "home"
    result = cli(["service", "install", "--platform", "linux", "--dry-run"], tmp_path, _env(home))
    assert result.returncode == 0, result.stderr
    assert "Restart=on-failure" in result.stdout and "ExecStart=" in result.stdout
    assert f"would write {home}/.config/systemd/user/nanoclaw.service" in result.stderr
    assert not home.exists()


def test_uninstall_removes_the_unit_and_says_when_there_is_none(tmp_path):
    home = tmp_path / "home"
    assert cli(["service", "install", "--platform", "linux", "--no-start"], tmp_path, _env(home)).returncode == 0
    unit = home / ".config" / "systemd" / "user" / "nanoclaw.service"
    assert unit.exists()
    removed = cli(["service", "uninstall", "--platform", "linux", "--no-stop"], tmp_path, _env(home))
    assert removed.returncode == 0 and not unit.exists(), removed.stderr
    again = cli(["service", "uninstall", "--platform", "linux", "--no-stop"], tmp_path, _env(home))
    assert again.returncode == 1 and "no unit at" in again.stderr


def test_service_name_still_runs_one_service_and_names_unknown_ones(tmp_path):
    result = cli(["service", "no-such-service"], tmp_path)
    assert result.returncode == 2 and "unknown service 'no-such-service'" in result.stderr
