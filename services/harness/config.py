"""Configuration: non-secrets in ``config.yml``, secrets in ``credentials.yml`` (git-ignored; the template is
``credentials.yml.dist``). Both are parsed into pydantic models at start-up; environment variables override
(``NANOCLAW_<SECTION>__<KEY>``, e.g. ``NANOCLAW_NATS__URLS='["nats://n1:4222"]'``), which is how containers
are configured. A missing or invalid key fails at boot with the key's path and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.harness.run_token import MIN_KEY_BYTES


class ConfigError(Exception):
    """The configuration is missing, unreadable or invalid. The message names the file, key and problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NatsSettings(_Section):
    urls: list[str] = Field(default_factory=list, description="empty: start the embedded nats-server")
    stream_replicas: int = Field(1, ge=1, le=5)
    duplicate_window_s: float = Field(600.0, gt=0, description="Nats-Msg-Id de-duplication window (s)")
    sync_always: bool = Field(True, description="embedded server: fsync every write")
    connect_timeout_s: float = Field(5.0, gt=0)
    request_timeout_s: float = Field(5.0, gt=0)


class HarnessSettings(_Section):
    max_deliver: int = Field(5, ge=1, description="deliveries before a message is dead-lettered")
    ack_wait_s: float = Field(30.0, gt=0)
    retry_delays_s: list[float] = Field(default_factory=lambda: [0.5, 2.0, 5.0, 15.0])
    fetch_batch: int = Field(64, ge=1)
    status_port: int | None = Field(None, ge=0, le=65535, description="HTTP /metrics /healthz /readyz; None: off")
    status_host: str = "127.0.0.1"


class LogSettings(_Section):
    level: str = "INFO"
    file_max_bytes: int = 10 * 1024 * 1024
    file_backups: int = 5

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return v


def _default_timezone() -> str:
    tz = os.environ.get("TZ", "")
    try:
        if tz:
            ZoneInfo(tz)
            return tz
    except (ZoneInfoNotFoundError, ValueError):
        pass
    return "UTC"


class Settings(BaseSettings):
    """All non-secret settings. ``data_dir`` holds JetStream files, logs, read models, group folders and the
    WhatsApp session."""

    model_config = SettingsConfigDict(env_prefix="NANOCLAW_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Path("data")
    assistant_name: str = Field("Andy", min_length=1, pattern=r"^\S(.*\S)?$")
    assistant_has_own_number: bool = False
    timezone: str = Field(default_factory=_default_timezone)
    services: list[str] = Field(default_factory=lambda: ["gateway", "router", "queue", "runner", "scheduler", "broker", "projections"],
                                description="what `nanoclaw up` runs")
    nats: NatsSettings = Field(default_factory=NatsSettings)
    harness: HarnessSettings = Field(default_factory=HarnessSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    channels: dict[str, Any] = Field(default_factory=dict)
    router: dict[str, Any] = Field(default_factory=dict)
    queue: dict[str, Any] = Field(default_factory=dict)
    runner: dict[str, Any] = Field(default_factory=dict)
    broker: dict[str, Any] = Field(default_factory=dict)
    scheduler: dict[str, Any] = Field(default_factory=dict)
    governance: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA time zone such as Europe/Berlin, got {v!r}") from None
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        # Explicit values (the YAML file, passed as init kwargs) lose to the environment: containers override files.
        return env_settings, init_settings


class NatsCredentials(_Section):
    user: str | None = None
    password: SecretStr | None = None
    nkey_seed: SecretStr | None = None
    creds_file: Path | None = None
    inbox_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$",
                                     description="private reply prefix the server's permissions allow (deployments)")
    sandbox_issuer_seed: SecretStr | None = Field(None, description="runner, external NATS: the account seed that "
                                                  "signs per-run sandbox users (auth callout; docs/deploy.md)")
    callout_seed: SecretStr | None = Field(None, description="runner, external NATS: the auth-callout responder's nkey seed")


class ExtCredentials(_Section):
    """Secrets of the external-access broker (docs/external-access.md). ``master_key``: the per-group signing,
    audit-hash and result keys are derived from it (keep it stable: changing it makes stored results
    unreadable and audit hashes incomparable). ``tokens``: provider name → API token (e.g. ``github``)."""

    master_key: SecretStr | None = None
    tokens: dict[str, SecretStr] = Field(default_factory=dict)


class Credentials(BaseSettings):
    """Secrets. Read by the services that need them (the model proxy, the broker); never passed to sandboxes."""

    model_config = SettingsConfigDict(env_prefix="NANOCLAW_CRED_", env_nested_delimiter="__", extra="forbid")

    anthropic_api_key: SecretStr | None = None
    claude_code_oauth_token: SecretStr | None = None
    webhook_token: SecretStr | None = None
    run_token_key: SecretStr | None = Field(None, description="HMAC key shared by the runner (mints per-run model-proxy "
                                            "tokens) and the broker (checks them); `nanoclaw up` makes one per start if unset")
    nats: NatsCredentials = Field(default_factory=NatsCredentials)
    ext: ExtCredentials = Field(default_factory=ExtCredentials)

    @field_validator("run_token_key")
    @classmethod
    def _run_token_key(cls, v: SecretStr | None) -> SecretStr | None:
        # The HMAC key of per-run tokens (services/harness/run_token.py refuses shorter keys at first use).
        if v is not None and len(v.get_secret_value().encode()) < MIN_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_KEY_BYTES} bytes; use a random value, e.g. the output of "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return env_settings, init_settings


def _read_yaml(path: Path, *, secret: bool) -> dict[str, Any]:
    """``secret``: the file holds secrets, so a YAML error names only the line and column, never the text around
    it (PyYAML's message quotes the offending line)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc) if secret else exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without any of the file's text."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "cannot parse"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where} (the line is not shown: the file holds secrets)"


def explain(exc: ValidationError, *, where: str, prefix: str = "", secret: bool = False) -> list[str]:
    """One line per problem: ``<where>: <dotted.key>: <what is wrong> (got <value>)``.

    ``prefix``: the section the validated mapping sits in (``channels``), so the key is the full dotted path
    of config.yml. ``secret``: never show the value given (credentials)."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in (*(prefix.split(".") if prefix else ()), *err["loc"])) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        shown = err["type"] in ("missing", "extra_forbidden") or secret
        got = "" if shown else f" (got {_short(err.get('input'))})"
        lines.append(f"{where}: {key}: {msg}{got}")
    return lines


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _resolve(path: Path | None, env_var: str, default: str) -> Path | None:
    path = path or (Path(os.environ[env_var]) if os.environ.get(env_var) else None)
    if path is None and Path(default).exists():
        path = Path(default)
    return path


def settings_path(path: Path | None = None) -> Path | None:
    """The config.yml :func:`load_settings` reads (None: defaults and environment only)."""
    return _resolve(path, "NANOCLAW_CONFIG", "config.yml")


def _load(cls, path: Path | None, env_var: str, default: str, *, secret: bool):
    path = _resolve(path, env_var, default)
    data = _read_yaml(path, secret=secret) if path else {}
    try:
        return cls(**data)
    except ValidationError as exc:
        where = str(path) if path else "environment"
        raise ConfigError("\n".join(explain(exc, where=where, secret=secret))) from None


def load_settings(path: Path | None = None) -> Settings:
    """Load ``config.yml`` (``path``, else ``$NANOCLAW_CONFIG``, else ``./config.yml`` if present).

    Raises:
        ConfigError: unreadable file or invalid keys (each named with its dotted path).
    """
    return _load(Settings, path, "NANOCLAW_CONFIG", "config.yml", secret=False)


def load_credentials(path: Path | None = None) -> Credentials:
    """Load ``credentials.yml`` (``path``, else ``$NANOCLAW_CREDENTIALS``, else ``./credentials.yml`` if present).
    A missing file gives empty credentials: each service says which secret it needs when it needs it.

    Raises:
        ConfigError: unreadable file or invalid keys.
    """
    return _load(Credentials, path, "NANOCLAW_CREDENTIALS", "credentials.yml", secret=True)

