"""Set-up errors found before anything starts (issue 13, "fail fast on set-up errors").

Without a Claude credential the runner and the broker start, `doctor` used to be green, and the first message
failed minutes later (the Claude CLI retrying the proxy's refusal), then again on every retry. `nanoclaw up`
(and `nanoclaw service broker`) now refuse to start with one line, exit status 2 (a configuration error, as
for an invalid config.yml), and `doctor` reports the same line as a failed check.
"""

from __future__ import annotations

from services.harness.config import Credentials

NEEDS_CREDENTIAL = ("runner", "broker")
"""Services useless without a Claude credential: the broker's model proxy injects it; the runner's agents reach
Claude only through that proxy."""

MISSING = ("no Claude credential: set anthropic_api_key (or claude_code_oauth_token) in credentials.yml, or "
           "NANOCLAW_CRED_ANTHROPIC_API_KEY / NANOCLAW_CRED_CLAUDE_CODE_OAUTH_TOKEN; the runner and broker "
           "cannot answer a message without it")


def has_claude_credential(creds: Credentials) -> bool:
    return any(secret is not None and secret.get_secret_value().strip()
               for secret in (creds.anthropic_api_key, creds.claude_code_oauth_token))


def missing_credential(services: list[str] | tuple[str, ...], creds: Credentials) -> str | None:
    """:data:`MISSING` when one of ``services`` needs a Claude credential and none is set, else None. Never
    names or echoes a secret."""
    if not any(s in NEEDS_CREDENTIAL for s in services) or has_claude_credential(creds):
        return None
    return MISSING
