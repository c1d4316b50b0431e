"""Router settings (the ``router:`` section of config.yml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class RouterConfig(BaseModel):
    """Args:
        max_messages_per_prompt: pending messages put in one prompt (NanoClaw ``MAX_MESSAGES_PER_PROMPT``);
            more are announced in the prompt, not silently dropped.
        sender_allowlist: path of the per-chat sender allowlist (JSON or YAML; §21.1). None: everyone allowed.
        sender_allowlist_fail_closed: what a missing or broken allowlist file means. False (NanoClaw's choice,
            the default): allow everyone, log a warning. True: only the owner's own messages trigger.
        send_receipt_timeout_s: how long the ``send_message`` tool waits for the channel's receipt before it
            answers "pending" (the message is stored and delivered when the channel is back).
        failure_notice_interval_s: at most one failure notice of each kind (run abandoned, credential missing or
            rejected, budget spent, message dead-lettered) per chat within this many seconds
            (services/router/notices.py); 0 sends one for every failure.
    """

    model_config = ConfigDict(extra="forbid")

    max_messages_per_prompt: int = Field(10, ge=1, le=200)
    sender_allowlist: Path | None = None
    sender_allowlist_fail_closed: bool = False
    send_receipt_timeout_s: float = Field(10.0, gt=0, le=300)
    failure_notice_interval_s: float = Field(600.0, ge=0)
