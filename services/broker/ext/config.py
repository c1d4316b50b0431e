"""Settings of the external-access broker: the ``broker.ext`` section of config.yml (no secrets: provider
tokens and the master key are in credentials.yml, ``ext:``)."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _base_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return v.rstrip("/")


class LevelRule(_Section):
    """What one level of a generic HTTP provider may reach. ``hosts``: host names, or ``host:port`` to allow
    only that port (a bare host allows any port); ``methods``: HTTP methods (upper case)."""

    hosts: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        bad = [h for h in v if not h or "/" in h or h != h.strip()]
        if bad:
            raise ValueError(f"hosts are names such as api.example.com or api.example.com:8443 (check {bad})")
        return [h.lower() for h in v]

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        v = [m.upper() for m in v]
        bad = [m for m in v if m not in METHODS]
        if bad:
            raise ValueError(f"methods must be among {', '.join(METHODS)} (check {bad})")
        return v


class _ProviderBase(_Section):
    """``auth_header``/``auth_scheme``: how the provider's token (credentials.yml ``ext.tokens.<name>``) is
    sent: ``<auth_header>: <auth_scheme> <token>`` (no scheme: the bare token). A provider without a token is
    called without one."""

    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"


class HttpProviderConfig(_ProviderBase):
    """A generic HTTP API. ``levels``: level (1 read-only, 2 write, 3 deploy/merge) → the hosts and methods
    it allows; a call needs the lowest level whose rule allows its host and method, and a call no rule allows
    is refused. ``allow_plain_http``: accept ``http://`` URLs (local services and tests only)."""

    kind: Literal["http"]
    levels: dict[int, LevelRule] = Field(min_length=1)
    allow_plain_http: bool = False

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: dict[int, LevelRule]) -> dict[int, LevelRule]:
        bad = sorted(level for level in v if level not in (1, 2, 3))
        if bad:
            raise ValueError(f"levels are 1 (read-only), 2 (write) and 3 (deploy/merge), not {bad}")
        return v


class GitHubProviderConfig(_ProviderBase):
    """GitHub's REST API. ``base_url``: the API root (GitHub Enterprise: ``https://<host>/api/v3``; tests: a
    local stub)."""

    kind: Literal["github"]
    base_url: str = "https://api.github.com"
    api_version: str = "2022-11-28"

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _base_url(v)


ProviderConfig = Annotated[Union[HttpProviderConfig, GitHubProviderConfig], Field(discriminator="kind")]


class ExtConfig(_Section):
    """Args:
        providers: provider name (``[a-z][a-z0-9_-]*``) → its settings. None configured: ``ext_call`` answers
            that external access is not set up.
        max_in_flight_per_group: calls one group may have going out at once (per broker process); the next
            one is answered "retry later".
        request_timeout_s: longest wait for a provider's whole answer.
        max_response_bytes: longest answer body kept and returned; a longer one is cut and marked ``truncated``.
    """

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    max_in_flight_per_group: int = Field(4, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    max_response_bytes: int = Field(256 * 1024, ge=1024, le=256 * 1024,
                                    description="the sealed copy (JSON-escaped, then base64) must fit one "
                                                "JetStream message (1 MB)")

    @field_validator("providers")
    @classmethod
    def _names(cls, v: dict) -> dict:
        bad = sorted(n for n in v if not PROVIDER_NAME.match(n))
        if bad:
            raise ValueError(f"provider names are [a-z][a-z0-9_-]* up to 32 characters (check {', '.join(bad)})")
        return v
