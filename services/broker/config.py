"""Broker settings (the ``broker:`` section of config.yml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.broker.ext.config import ExtConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelProxyConfig(_Section):
    """Args:
        host, port: where the proxy listens (port 0: any free port). Sandboxes reach it as ``model.base_url``.
        upstream_url: the Messages API the proxy forwards to (no trailing path; the request path is appended).
        budgets_usd: group folder → spending limit in USD over the whole usage ledger; a group without an entry
            has no limit. A call is refused once the group's recorded spend is at or above its limit.
        request_timeout_s: longest wait to connect upstream and longest silence between two received chunks
            (not a limit on a whole streamed response, which may legitimately run for minutes).
        refusals_recorded_per_minute: how many refused requests per run are recorded as
            ``SandboxRequestRefused`` events, in a burst and per minute after it; more are still refused, only
            not recorded (so a run cannot flood the event log); the next recorded one says how many were skipped.
    """

    host: str = "127.0.0.1"
    port: int = Field(8788, ge=0, le=65535)
    upstream_url: str = "https://api.anthropic.com"
    budgets_usd: dict[str, float] = Field(default_factory=dict)
    request_timeout_s: float = Field(600.0, gt=0, description="the Claude CLI's own request timeout is 600 s")
    refusals_recorded_per_minute: int = Field(10, ge=1)

    @field_validator("upstream_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("budgets_usd")
    @classmethod
    def _budgets(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(folder for folder, usd in v.items() if not usd >= 0)
        if bad:
            raise ValueError(f"budgets must be 0 or more USD (check {', '.join(bad)})")
        return v


class BrokerConfig(_Section):
    model_proxy: ModelProxyConfig = Field(default_factory=ModelProxyConfig)
    ext: ExtConfig = Field(default_factory=ExtConfig)
