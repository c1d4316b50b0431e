"""Config files fuzzed at every key path of the configuration model: a wrong type or an unknown key anywhere in
config.yml (top level, harness sections, every service section) or credentials.yml makes `nanoclaw up` and
`nanoclaw doctor` exit 2 before they start anything, with one line naming the file and the full dotted path;
never a traceback, never a secret.

In process (typer's CliRunner), so hundreds of files take seconds; `up` itself is replaced by a tripwire: reaching
it with an invalid file fails the test. tests/cli/test_cli.py runs the same refusals as real processes.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import BaseModel, SecretStr
from typer.testing import CliRunner

from services.cli import cmd_up
from services.cli.config_sections import SECTIONS
from services.cli.main import app
from services.harness.config import Credentials, Settings

SECRETS = {"anthropic_api_key": "sk-ant-SECRET-0001", "webhook_token": "SECRET-WEBHOOK-0002",
           "nats": {"password": "SECRET-NATS-0003"}}
SECRET_MARK = "SECRET"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``Model`` or ``Model | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def key_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> tuple[list[tuple[tuple[str, ...], Any]], list[tuple[str, ...]]]:
    """(leaves as (path, annotation), mappings that forbid unknown keys as paths) of ``model``'s fields."""
    leaves, mappings = [], [prefix]
    for name, info in model.model_fields.items():
        nested = _model_of(info.annotation)
        if nested is not None:
            more_leaves, more_mappings = key_paths(nested, (*prefix, name))
            leaves += more_leaves
            mappings += more_mappings
        else:
            leaves.append(((*prefix, name), info.annotation))
    return leaves, mappings


def config_paths() -> tuple[list, list]:
    leaves, mappings = key_paths(Settings)
    leaves = [(p, a) for p, a in leaves if p[0] not in SECTIONS]  # plain mappings in Settings: their models below
    for section, model in SECTIONS.items():
        more_leaves, more_mappings = key_paths(model, (section,))
        leaves += more_leaves
        mappings += more_mappings
    return leaves, [m for m in mappings if m]  # the top level is covered by the unknown-key cases of a section


CONFIG_LEAVES, CONFIG_MAPPINGS = config_paths()
CRED_LEAVES, CRED_MAPPINGS = key_paths(Credentials)


def _is_mapping_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is dict or annotation is dict or any(_is_mapping_type(a) for a in typing.get_args(annotation)
                                                       if origin in (typing.Union, types.UnionType))


def _scalar(annotation: Any) -> bool:
    return annotation in (int, float, bool) or (typing.get_origin(annotation) in (typing.Union, types.UnionType)
                                                and any(a in (int, float, bool) for a in typing.get_args(annotation)))


# A word pydantic never reads as a number or a boolean (those accept yes/no/on/off/t/f/y/n).
NOT_A_NUMBER = st.from_regex(r"[qxz][a-z]{2,8}", fullmatch=True)


@st.composite
def wrong_value(draw, annotation: Any) -> Any:
    """A value of the wrong type for ``annotation``."""
    if _is_mapping_type(annotation):
        return draw(st.sampled_from([[1, 2], "text", 3]))
    choices = [st.dictionaries(NOT_A_NUMBER, st.integers(), min_size=1, max_size=2)]  # a mapping fits no scalar
    if _scalar(annotation):
        choices.append(NOT_A_NUMBER)
    return draw(st.one_of(choices))


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


@st.composite
def bad_config(draw) -> tuple[dict[str, Any], str]:
    """(config.yml contents, the dotted path its error must name)."""
    if draw(st.booleans()):
        path, annotation = draw(st.sampled_from(CONFIG_LEAVES))
        return with_value(path, draw(wrong_value(annotation))), ".".join(path)
    mapping = draw(st.sampled_from(CONFIG_MAPPINGS))
    unknown = "zz_" + draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True))
    return with_value((*mapping, unknown), draw(st.integers())), ".".join((*mapping, unknown)) + ": unknown key"


runner = CliRunner()


def invoke(tmp: Path, config: dict[str, Any], credentials: dict[str, Any], command: list[str]):
    (tmp / "config.yml").write_text(yaml.safe_dump({"data_dir": str(tmp / "data"), **config}))
    (tmp / "credentials.yml").write_text(yaml.safe_dump(credentials))
    with mock.patch.object(cmd_up, "_up", side_effect=AssertionError("`up` started with an invalid configuration")):
        return runner.invoke(app, [*command, "-c", str(tmp / "config.yml"), "--credentials", str(tmp / "credentials.yml")])


def refused_naming(result, file: Path, expected: str) -> None:
    shown = result.output
    assert result.exit_code == 2, shown
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    assert "Traceback" not in shown and SECRET_MARK not in shown, shown
    lines = shown.splitlines()
    assert lines and all(line.startswith(f"configuration error: {file}: ") for line in lines), shown
    assert any(line.startswith(f"configuration error: {file}: {expected}") for line in lines), (expected, shown)
    assert "NanoClaw Bus up" not in shown


def test_there_are_key_paths_in_every_section_to_fuzz():
    assert {p[0] for p, _ in CONFIG_LEAVES} >= {"nats", "harness", "log", *SECTIONS, "timezone", "data_dir"}
    assert ("broker", "model_proxy", "port") in [p for p, _ in CONFIG_LEAVES]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_config(), command=st.sampled_from([["up", "--port", "0"], ["doctor"]]))
def test_a_wrong_type_or_unknown_key_at_any_config_path_exits_2_naming_the_dotted_path(tmp_path, case, command):
    config, expected = case
    refused_naming(invoke(tmp_path, config, SECRETS, command), tmp_path / "config.yml", expected)


@st.composite
def bad_credentials(draw) -> tuple[dict[str, Any], str]:
    """(credentials.yml contents with secrets, the dotted path its error must name)."""
    if draw(st.booleans()):
        path, annotation = draw(st.sampled_from(CRED_LEAVES))
        # A wrong type that carries a secret-looking value: the error must name the key, never show the value.
        value = {"k": f"{SECRET_MARK}-in-a-mapping"} if not _is_mapping_type(annotation) else [f"{SECRET_MARK}-in-a-list"]
        if annotation in (SecretStr, SecretStr | None) and draw(st.booleans()):
            value = [f"{SECRET_MARK}-in-a-list"]
        return {**SECRETS, **with_value(path, value)} if len(path) == 1 else _merge(SECRETS, with_value(path, value)), ".".join(path)
    mapping = draw(st.sampled_from(CRED_MAPPINGS))
    unknown = "zz_" + draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True))
    return _merge(SECRETS, with_value((*mapping, unknown), f"{SECRET_MARK}-unknown")) if mapping else \
        {**SECRETS, unknown: f"{SECRET_MARK}-unknown"}, ".".join((*mapping, unknown)) + ": unknown key"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_credentials(), command=st.sampled_from([["up", "--port", "0"], ["doctor"]]))
def test_a_wrong_type_or_unknown_key_in_credentials_exits_2_naming_the_path_and_never_the_secret(tmp_path, case, command):
    credentials, expected = case
    refused_naming(invoke(tmp_path, {}, credentials, command), tmp_path / "credentials.yml", expected)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(breakage=st.sampled_from(['"', "[", "{", ": x", "\t", "'", "&a *b"]), line=st.integers(0, 2))
def test_a_yaml_error_anywhere_in_credentials_never_echoes_a_secret_line(tmp_path, breakage, line):
    command = ["up", "--port", "0"]  # `up` only: a breakage that is still valid YAML reaches the tripwire, not the network
    lines = [f"anthropic_api_key: {SECRETS['anthropic_api_key']}", f"webhook_token: {SECRETS['webhook_token']}",
             f"run_token_key: {SECRET_MARK}-run-token-key-0123456789"]
    lines[line] += breakage
    (tmp_path / "config.yml").write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    (tmp_path / "credentials.yml").write_text("\n".join(lines) + "\n")
    with mock.patch.object(cmd_up, "_up", side_effect=AssertionError("`up` started with an invalid configuration")):
        result = runner.invoke(app, [*command, "-c", str(tmp_path / "config.yml"),
                                     "--credentials", str(tmp_path / "credentials.yml")])
    if not isinstance(result.exception, AssertionError):  # still valid YAML and values: the tripwire; else refused
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"configuration error: {tmp_path / 'credentials.yml'}: "), result.output
    assert SECRET_MARK not in result.output and "Traceback" not in result.output, result.output
