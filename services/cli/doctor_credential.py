"""``nanoclaw doctor``'s Claude credential check: ask the model proxy's upstream whether it accepts the key.

``GET <broker.model_proxy.upstream_url>/v1/models`` with the credential exactly as the proxy sends it
(services/broker/model_proxy.py ``UpstreamCredential``: ``x-api-key``, or an OAuth bearer token with its beta
header) and ``anthropic-version: 2023-06-01`` (the Models API, docs.anthropic.com "List Models"). 200: accepted;
401/403: rejected; anything else or no answer: cannot tell. The secret never appears in the result (any text of
the answer is scrubbed of it too).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

from services.broker.config import BrokerConfig
from services.broker.model_proxy import upstream_credential
from services.harness.config import Credentials, Settings

API_VERSION = "2023-06-01"


@dataclass
class CredentialResult:
    ok: bool
    detail: str
    required: bool


async def check_credential(settings: Settings, creds: Credentials, timeout_s: float = 10.0) -> CredentialResult:
    api_key = creds.anthropic_api_key.get_secret_value() if creds.anthropic_api_key else None
    oauth = creds.claude_code_oauth_token.get_secret_value() if creds.claude_code_oauth_token else None
    credential = upstream_credential(api_key, oauth)
    if credential is None:
        return CredentialResult(False, "not set: agent runs need anthropic_api_key (or claude_code_oauth_token) in "
                                       "credentials.yml", required=False)
    upstream = BrokerConfig.model_validate(settings.broker).model_proxy.upstream_url
    headers = CIMultiDict({"anthropic-version": API_VERSION})
    credential.apply(headers)
    kind = "API key" if credential.kind == "api_key" else "OAuth token"
    secret = api_key or oauth or ""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            async with session.get(f"{upstream}/v1/models", headers=headers) as resp:
                text = (await resp.text(errors="replace"))[:200]
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return CredentialResult(False, f"cannot check: {upstream} did not answer ({type(exc).__name__}: "
                                       f"{_scrub(str(exc), secret)})", required=False)
    if resp.status == 200:
        return CredentialResult(True, f"{kind} accepted by {upstream}", required=True)
    if resp.status in (401, 403):
        return CredentialResult(False, f"{kind} rejected by {upstream} ({resp.status}: {_scrub(text, secret)})", required=True)
    return CredentialResult(False, f"cannot check: {upstream}/v1/models answered {resp.status}", required=False)


def _scrub(text: str, secret: str) -> str:
    text = " ".join(text.split())
    return text.replace(secret, "***") if secret else text
