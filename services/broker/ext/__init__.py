"""The external-access broker (docs/external-access.md): capabilities per group × provider, providers, and the
``ext_call`` tool served over NATS. Wired into the broker service by :func:`build_ext`."""

from __future__ import annotations

import logging

from events.repository import Repository
from services.broker.ext.broker import EXT_CALL_SUBJECT, ExtBroker
from services.broker.ext.config import ExtConfig
from services.broker.ext.keys import MIN_MASTER_KEY_BYTES
from services.broker.ext.providers import build_providers
from services.harness.clock import Clock
from services.harness.config import ConfigError, ExtCredentials

__all__ = ["EXT_CALL_SUBJECT", "ExtBroker", "build_ext"]

log = logging.getLogger("nanoclaw.broker.ext")


def build_ext(config: ExtConfig, credentials: ExtCredentials, repository: Repository, clock: Clock) -> ExtBroker:
    """The broker for ``broker.ext`` with its secrets from credentials.yml ``ext:``.

    Raises:
        ConfigError: providers are configured but ``ext.master_key`` is missing or shorter than 16 bytes, or a
            token is given for a provider that is not configured (a typo would silently send no token).
    """
    master = credentials.master_key.get_secret_value().encode() if credentials.master_key else None
    tokens = {name: secret.get_secret_value() for name, secret in credentials.tokens.items()}
    if config.providers:
        if not master:
            raise ConfigError("credentials: ext.master_key is not set; the external-access broker derives each "
                              "group's signing, audit and result keys from it (set it in credentials.yml or "
                              "NANOCLAW_CRED_EXT__MASTER_KEY to a stable random value, e.g. the output of "
                              "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        if len(master) < MIN_MASTER_KEY_BYTES:
            raise ConfigError(f"credentials: ext.master_key is shorter than {MIN_MASTER_KEY_BYTES} bytes")
    unknown = sorted(set(tokens) - set(config.providers))
    if unknown:  # a typo here would silently send no token, so say so (not fatal: tokens may outlive a provider)
        log.warning("credentials.yml ext.tokens names providers that broker.ext.providers does not configure: %s",
                    ", ".join(unknown))
    for name in sorted(set(config.providers) - set(tokens)):
        log.warning("ext provider %s has no token in credentials.yml (ext.tokens.%s): calls go out without one",
                    name, name)
    return ExtBroker(config, build_providers(config.providers, tokens), master, repository, clock)
