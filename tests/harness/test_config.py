"""Configuration: YAML files into pydantic models, environment overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.harness.config import ConfigError, load_credentials, load_settings


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.assistant_name == "Andy" and s.nats.urls == [] and s.nats.sync_always is True


def test_a_wrong_type_names_the_dotted_key_and_what_was_expected(tmp_path):
    path = write(tmp_path, "nats:\n  stream_replicas: lots\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value) and "nats.stream_replicas" in str(info.value) and "integer" in str(info.value)


def test_an_unknown_key_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"nats\.url: unknown key"):
        load_settings(write(tmp_path, "nats:\n  url: nats://x\n"))


def test_an_invalid_time_zone_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="timezone: .*IANA"):
        load_settings(write(tmp_path, "timezone: Mars/Olympus\n"))


def test_yaml_that_does_not_parse_names_the_file(tmp_path):
    path = write(tmp_path, "nats: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path)


def test_environment_variables_override_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "assistant_name: Bob\nnats:\n  urls: ['nats://file:4222']\n")
    monkeypatch.setenv("NANOCLAW_NATS__URLS", '["nats://n1:4222","nats://n2:4222"]')
    monkeypatch.setenv("NANOCLAW_ASSISTANT_NAME", "Claw")
    s = load_settings(path)
    assert s.nats.urls == ["nats://n1:4222", "nats://n2:4222"] and s.assistant_name == "Claw"


def test_credentials_are_secret_and_validated(tmp_path):
    creds = load_credentials(write(tmp_path, "anthropic_api_key: sk-test-123\n", "credentials.yml"))
    assert "sk-test-123" not in repr(creds) and creds.anthropic_api_key.get_secret_value() == "sk-test-123"
    with pytest.raises(ConfigError, match="anthropic_key: unknown key"):
        load_credentials(write(tmp_path, "anthropic_key: x\n", "bad.yml"))


def test_the_credentials_template_is_a_valid_credentials_file():
    template = Path(__file__).resolve().parents[2] / "credentials.yml.dist"
    load_credentials(template)


def test_the_example_config_is_valid_and_shows_every_default(tmp_path):
    from services.broker.config import BrokerConfig
    from services.gateway.config import GatewayConfig
    from services.queue.config import QueueConfig
    from services.router.config import RouterConfig
    from services.runner.config import RunnerConfig
    from services.scheduler.config import SchedulerConfig

    example = Path(__file__).resolve().parents[2] / "config.example.yml"
    s = load_settings(example)
    defaults = load_settings(write(tmp_path, "{}\n")).model_copy(update={"timezone": s.timezone})
    raw = {"router": {}, "channels": {}, "queue": {}, "runner": {}, "broker": {}, "scheduler": {}}
    assert s.model_copy(update=raw) == defaults  # the raw sections are checked below
    assert RouterConfig.model_validate(s.router) == RouterConfig()
    assert GatewayConfig.model_validate(s.channels) == GatewayConfig()
    assert QueueConfig.model_validate(s.queue) == QueueConfig()
    assert RunnerConfig.model_validate(s.runner) == RunnerConfig()
    assert BrokerConfig.model_validate(s.broker) == BrokerConfig()
    assert SchedulerConfig.model_validate(s.scheduler) == SchedulerConfig()


def test_each_problem_is_one_line_naming_the_file_and_the_dotted_key(tmp_path):
    path = write(tmp_path, "nats:\n  stream_replicas: lots\n  url: x\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{path}: nats.stream_replicas: Input should be a valid integer") and lines[0].endswith("(got 'lots')")
    assert lines[1] == f"{path}: nats.url: unknown key"


def test_a_run_token_key_shorter_than_16_bytes_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_credentials(write(tmp_path, "run_token_key: shortkey\n", "credentials.yml"))
    assert "run_token_key: must be at least 16 bytes" in str(info.value) and "shortkey" not in str(info.value)


@pytest.mark.parametrize("text", [
    'anthropic_api_key: "sk-ant-SECRET-123\n',            # unclosed quote: the error points past the secret line
    "anthropic_api_key: sk-ant-SECRET-123: oops\n",        # a mapping value on the secret's own line
    "webhook_token: [sk-ant-SECRET-123\n",
])
def test_a_yaml_error_in_credentials_never_echoes_the_secret_line(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        load_credentials(write(tmp_path, text, "credentials.yml"))
    assert "not valid YAML" in str(info.value) and "line " in str(info.value)
    assert "SECRET" not in str(info.value)


def test_a_wrongly_typed_secret_is_named_but_its_value_never_shown(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_credentials(write(tmp_path, "nats:\n  password: [sk-SECRET-1]\nanthropic_api_key: {k: sk-SECRET-2}\n", "c.yml"))
    assert "nats.password" in str(info.value) and "anthropic_api_key" in str(info.value)
    assert "SECRET" not in str(info.value)
