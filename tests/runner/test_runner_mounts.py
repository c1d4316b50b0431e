"""Per-group mounts (v1 §17.1, tightened) and the extra-mount allowlist (v1 §17.2)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from services.runner.mount_allowlist import DEFAULT_BLOCKED_PATTERNS, MountAllowlistLoader
from services.runner.mounts import RunnerPaths, build_mounts, prepare_dirs


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    h = tmp_path / "home"
    (h / "projects" / "app").mkdir(parents=True)
    (h / "docs").mkdir()
    monkeypatch.setenv("HOME", str(h))
    return h


def write_allowlist(path: Path, **overrides) -> Path:
    body = {"allowedRoots": [{"path": "~/projects", "allowReadWrite": True, "description": "Development projects"},
                             {"path": "~/docs", "allowReadWrite": False}],
            "blockedPatterns": ["password", "secret", "token"], "nonMainReadOnly": True, **overrides}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


@pytest.fixture
def allowlist(home: Path) -> MountAllowlistLoader:
    return MountAllowlistLoader(write_allowlist(home / ".config" / "nanoclaw" / "mount-allowlist.json"))


@pytest.fixture
def paths(tmp_path: Path) -> RunnerPaths:
    p = RunnerPaths.from_data_dir(tmp_path / "data")
    for folder in ("main", "family", "work"):
        prepare_dirs(folder, p)
    (p.groups_dir / "global").mkdir()
    (tmp_path / "data" / "whatsapp").mkdir()
    (tmp_path / "data" / "whatsapp" / "session.sqlite3").write_text("secret session")
    return p


def table(mounts) -> dict[str, tuple[str, bool]]:
    return {m.container: (m.host, m.read_only) for m in mounts}


# --- the fixed mounts ---------------------------------------------------------------------------------------

def test_non_main_gets_its_folder_rw_global_ro_and_its_session_dir(paths: RunnerPaths, allowlist) -> None:
    got = table(build_mounts("family", False, None, paths, allowlist))
    assert got == {"/workspace/group": (str(paths.groups_dir / "family"), False),
                   "/workspace/global": (str(paths.groups_dir / "global"), True),
                   "/home/agent/.claude": (str(paths.sessions_dir / "family" / ".claude"), False)}


def test_main_gets_global_rw_and_nothing_else_more(paths: RunnerPaths, allowlist) -> None:
    got = table(build_mounts("main", True, None, paths, allowlist))
    assert got["/workspace/global"] == (str(paths.groups_dir / "global"), False)
    assert set(got) == {"/workspace/group", "/workspace/global", "/home/agent/.claude"}


@pytest.mark.parametrize("is_main", [True, False])
def test_no_group_sees_other_groups_the_store_the_project_or_the_whatsapp_session(paths: RunnerPaths, allowlist,
                                                                                   is_main: bool) -> None:
    data = paths.protected[0]
    for m in build_mounts("main", is_main, None, paths, allowlist):
        host = Path(m.host)
        assert host not in (data, paths.groups_dir, paths.sessions_dir, data / "whatsapp")
        assert not host.is_relative_to(data / "whatsapp")
        assert not any(host.is_relative_to(paths.groups_dir / other) for other in ("family", "work"))
        assert not m.container.startswith("/workspace/project") and m.container != "/workspace/ipc"


def test_global_is_left_out_when_it_does_not_exist(paths: RunnerPaths, allowlist) -> None:
    (paths.groups_dir / "global").rmdir()
    assert "/workspace/global" not in table(build_mounts("family", False, None, paths, allowlist))


@pytest.mark.parametrize("folder", ["../x", "global", "a/b", "", "x y"])
def test_invalid_folders_are_refused(paths: RunnerPaths, allowlist, folder: str) -> None:
    with pytest.raises(ValueError, match="invalid group folder"):
        build_mounts(folder, False, None, paths, allowlist)


def test_an_extra_mount_may_not_expose_the_data_dir_or_another_group(paths: RunnerPaths, home: Path,
                                                                     tmp_path: Path) -> None:
    # Even under an allowed root, the data dir (every group, the event store, the WhatsApp session) is off limits.
    loader = MountAllowlistLoader(write_allowlist(home / "al.json", allowedRoots=[{"path": str(tmp_path),
                                                                                  "allowReadWrite": True}]))
    config = {"additionalMounts": [{"hostPath": str(tmp_path)}, {"hostPath": str(paths.groups_dir / "work")},
                                   {"hostPath": str(tmp_path / "data" / "whatsapp"), "containerPath": "wa"}]}
    assert set(table(build_mounts("main", True, config, paths, loader))) == {
        "/workspace/group", "/workspace/global", "/home/agent/.claude"}


def test_validated_extra_mounts_land_under_workspace_extra(paths: RunnerPaths, allowlist, home: Path) -> None:
    config = {"additionalMounts": [{"hostPath": "~/projects/app", "readonly": False},
                                   {"hostPath": str(home / "docs"), "containerPath": "reference"}]}
    got = table(build_mounts("main", True, config, paths, allowlist))
    assert got["/workspace/extra/app"] == (str(home / "projects" / "app"), False)
    assert got["/workspace/extra/reference"] == (str(home / "docs"), True)


# --- the allowlist --------------------------------------------------------------------------------------------

def test_a_missing_allowlist_blocks_everything_and_is_not_cached(home: Path) -> None:
    path = home / ".config" / "nanoclaw" / "mount-allowlist.json"
    loader = MountAllowlistLoader("~/.config/nanoclaw/mount-allowlist.json")
    decision = loader.validate({"hostPath": "~/projects/app"}, True)
    assert not decision.allowed and decision.reason == f"No mount allowlist configured at {path}"
    write_allowlist(path)
    assert loader.validate({"hostPath": "~/projects/app"}, True).allowed


@pytest.mark.parametrize("content", ["{not json", json.dumps({"allowedRoots": {}, "blockedPatterns": [],
                                                               "nonMainReadOnly": True}),
                                     json.dumps({"allowedRoots": [], "blockedPatterns": [], "nonMainReadOnly": "yes"}),
                                     json.dumps({"allowedRoots": [], "blockedPatterns": "x", "nonMainReadOnly": True})])
def test_an_invalid_allowlist_blocks_everything_and_the_error_is_cached(home: Path, content: str, caplog) -> None:
    path = home / "al.json"
    path.write_text(content)
    loader = MountAllowlistLoader(path)
    with caplog.at_level(logging.ERROR):
        decision = loader.validate({"hostPath": "~/projects/app"}, True)
    assert not decision.allowed and "invalid mount allowlist" in decision.reason
    assert any("BLOCKED" in r.getMessage() for r in caplog.records)
    write_allowlist(path)  # fixed on disk, but the error stays until restart
    assert not loader.validate({"hostPath": "~/projects/app"}, True).allowed


def test_a_valid_allowlist_is_cached_and_patterns_are_merged_with_the_defaults(allowlist) -> None:
    loaded = allowlist.load()
    assert loaded is not None and set(DEFAULT_BLOCKED_PATTERNS) | {"password", "secret", "token"} == set(
        loaded.blocked_patterns)
    allowlist.path.unlink()
    assert allowlist.load() is loaded


@pytest.mark.parametrize("name", [".ssh", "my-tokenizer", "credentials.d", "x.env"])
def test_blocked_patterns_match_components_by_substring(home: Path, allowlist, name: str) -> None:
    (home / "projects" / name).mkdir()
    decision = allowlist.validate({"hostPath": f"~/projects/{name}"}, True)
    assert not decision.allowed and "blocked pattern" in decision.reason


def test_symlinks_are_resolved_before_any_check(home: Path, allowlist, tmp_path: Path) -> None:
    (home / ".ssh").mkdir()
    (home / "projects" / "innocent").symlink_to(home / ".ssh")
    d = allowlist.validate({"hostPath": "~/projects/innocent"}, True)
    assert not d.allowed and '".ssh"' in d.reason
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "projects" / "escape").symlink_to(outside)
    d = allowlist.validate({"hostPath": "~/projects/escape"}, True)
    assert not d.allowed and "not under any allowed root" in d.reason
    (home / "link-to-app").symlink_to(home / "projects" / "app")
    d = allowlist.validate({"hostPath": "~/link-to-app"}, True)
    assert d.allowed and d.host == str(home / "projects" / "app") and d.container == "link-to-app"


@pytest.mark.parametrize("container", ["/abs", "../up", "a/../../b", "x:/etc", "a,readonly=false", " ", "."])
def test_container_path_rules(allowlist, container: str) -> None:
    d = allowlist.validate({"hostPath": "~/projects/app", "containerPath": container}, True)
    assert not d.allowed and "Invalid container path" in d.reason


def test_missing_host_paths_and_paths_outside_the_roots_are_rejected(home: Path, allowlist, tmp_path: Path) -> None:
    assert "does not exist" in allowlist.validate({"hostPath": "~/projects/nope"}, True).reason
    (tmp_path / "elsewhere").mkdir()
    assert "not under any allowed root" in allowlist.validate({"hostPath": str(tmp_path / "elsewhere")}, True).reason
    assert "malformed" in allowlist.validate({"containerPath": "x"}, True).reason


def test_read_only_by_default_non_main_forced_ro_and_root_without_rw(home: Path, allowlist) -> None:
    assert allowlist.validate({"hostPath": "~/projects/app"}, True).read_only
    assert not allowlist.validate({"hostPath": "~/projects/app", "readonly": False}, True).read_only
    assert allowlist.validate({"hostPath": "~/projects/app", "readonly": False}, False).read_only
    assert allowlist.validate({"hostPath": "~/docs", "readonly": False}, True).read_only
    relaxed = MountAllowlistLoader(write_allowlist(home / "relaxed.json", nonMainReadOnly=False))
    assert not relaxed.validate({"hostPath": "~/projects/app", "readonly": False}, False).read_only


def test_the_allowlist_file_can_never_be_mounted(home: Path) -> None:
    # Allowlist kept inside an allowed root: neither the file nor any directory containing it may be mounted.
    path = write_allowlist(home / "projects" / "conf" / "allow.json",
                           allowedRoots=[{"path": "~", "allowReadWrite": True}])
    loader = MountAllowlistLoader(path)
    for host in (str(path), "~/projects/conf", "~/projects", "~"):
        d = loader.validate({"hostPath": host, "containerPath": "x"}, True)
        assert not d.allowed and "protected path" in d.reason, host
    assert loader.validate({"hostPath": "~/projects/app"}, True).allowed


def test_rejections_are_logged_and_the_rest_still_mount(allowlist, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        ok = allowlist.validate_all([{"hostPath": "~/nowhere"}, {"hostPath": "~/projects/app"}], "family", False)
    assert [d.container for d in ok] == ["app"]
    assert any("Additional mount REJECTED" in r.getMessage() and "family" in r.getMessage() for r in caplog.records)
    assert os.path.isdir(ok[0].host or "")


def test_prepare_dirs_hands_the_writable_dirs_to_the_sandbox_user_when_root(tmp_path: Path) -> None:
    paths = RunnerPaths.from_data_dir(tmp_path / "data")
    prepare_dirs("family", paths, owner=(1234, 2345))
    for d in (paths.group_dir("family"), paths.claude_dir("family")):
        assert d.is_dir()
        if os.geteuid() == 0:
            assert (d.stat().st_uid, d.stat().st_gid) == (1234, 2345)
    assert paths.claude_dir("family").parent.stat().st_uid == os.geteuid()  # the session dir itself stays the host's
    assert not (paths.group_dir("family") / "logs").exists()  # run logs live under <data>/logs/runs
    prepare_dirs("family", paths)  # idempotent, and no owner means no chown
