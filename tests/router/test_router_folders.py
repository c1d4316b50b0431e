"""Group folder names (NanoClaw v1 group-folder.test.ts, §24.1) and path containment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.folders import InvalidFolder, resolve_group_path, validate_folder

BASE = Path("/srv/nanoclaw")


@pytest.mark.parametrize("name", ["main", "family-chat", "Team_42"])
def test_folder_accepts_letters_digits_dash_and_underscore(name: str) -> None:
    assert validate_folder(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../etc", "path separator"),
        ("/tmp", "path separator"),
        ("global", "reserved"),
        ("", "empty"),
    ],
)
def test_folder_rejects_traversal_absolute_reserved_and_empty_names(name: str, problem: str) -> None:
    with pytest.raises(InvalidFolder, match=problem):
        validate_folder(name)


@pytest.mark.parametrize("name", ["Global", "GLOBAL", "gLoBaL"])
def test_reserved_folder_global_is_refused_in_any_letter_case(name: str) -> None:
    with pytest.raises(InvalidFolder, match="reserved"):
        validate_folder(name)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a..b", "'..'"),
        ("..", "'..'"),
        ("a\\b", "path separator"),
        ("family chat", "whitespace"),
        (" main", "whitespace"),
        ("main\n", "whitespace"),
        ("tab\there", "whitespace"),
        ("-leading-dash", "start with a letter or digit"),
        ("_leading", "start with a letter or digit"),
        ("x" * 65, "longer than 64"),
        ("dots.not.allowed", "only letters"),
        ("café", "only letters"),
        ("nul\x00byte", "only letters"),
    ],
)
def test_folder_error_names_the_problem(name: str, problem: str) -> None:
    with pytest.raises(InvalidFolder, match=re.escape(problem)) as caught:
        validate_folder(name)
    assert repr(name) in str(caught.value)


def test_folder_of_exactly_64_characters_is_accepted() -> None:
    assert validate_folder("a" * 64) == "a" * 64


def test_invalid_folder_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_folder("../x")


def test_non_string_folder_is_refused() -> None:
    with pytest.raises(InvalidFolder, match="not a string"):
        validate_folder(None)  # type: ignore[arg-type]


def test_resolved_group_paths_end_in_groups_and_ipc_folder() -> None:
    assert str(resolve_group_path(BASE / "groups", "family-chat")).endswith("groups/family-chat")
    assert str(resolve_group_path(BASE / "data" / "ipc", "family-chat")).endswith("data/ipc/family-chat")


def test_resolved_group_path_is_absolute_and_a_direct_child_of_base() -> None:
    path = resolve_group_path(BASE / "groups", "main")
    assert path == Path("/srv/nanoclaw/groups/main")
    assert path.parent == BASE / "groups"


def test_resolved_path_normalises_a_base_with_dot_dot_segments() -> None:
    assert resolve_group_path(Path("/srv/x/../nanoclaw/groups"), "main") == Path("/srv/nanoclaw/groups/main")


def test_relative_base_is_resolved_against_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_group_path(Path("groups"), "main") == tmp_path / "groups" / "main"


@pytest.mark.parametrize("name", ["../../etc", "/tmp", "..", "a/../../b", "global", ""])
def test_resolving_an_unsafe_folder_raises(name: str) -> None:
    with pytest.raises(InvalidFolder):
        resolve_group_path(BASE / "groups", name)


_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@given(st.text(max_size=70))
def test_property_validation_accepts_exactly_the_folder_pattern_minus_global(name: str) -> None:
    expected = bool(_VALID.fullmatch(name)) and name.lower() != "global"
    try:
        validate_folder(name)
        accepted = True
    except InvalidFolder:
        accepted = False
    assert accepted is expected


@given(st.from_regex(_VALID, fullmatch=True).filter(lambda s: s.lower() != "global"))
def test_property_every_valid_folder_resolves_inside_the_base(name: str) -> None:
    path = resolve_group_path(BASE / "groups", name)
    assert path.parent == BASE / "groups"
    assert path.name == name
