"""Gateway settings (the ``channels:`` section of config.yml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhatsAppConfig(_Section):
    enabled: bool = False
    session_db: Path | None = Field(None, description="default: <data_dir>/whatsapp/session.sqlite3")
    messages_per_minute: float = Field(20, gt=0, description="per-chat outbound rate limit")
    burst: int = Field(5, ge=1)
    group_sync_hours: float = Field(24, gt=0)


class HttpConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    max_wait_s: float = Field(30, ge=0, description="longest long-poll of GET /v1/chats/{chat}/messages")
    max_text_bytes: int = Field(64 * 1024, ge=1)


class GatewayConfig(_Section):
    whatsapp: WhatsAppConfig = Field(default_factory=WhatsAppConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    inbound_buffer_max: int = Field(10_000, ge=1, description="inbound events kept on disk while NATS is down")
