"""The real Claude CLI (bundled with claude-agent-sdk) talks to StubAnthropic through the model proxy, holding
only a per-run token: the proxy is transparent to it, and the call is metered (stack-notes §2.6)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from claude_agent_sdk import AssistantMessage, ClaudeAgentOptions, ResultMessage, TextBlock, query

from tests.broker.test_broker_proxy import REAL_KEY, broker, token
from tests.bus import events_of
from tests.stub_anthropic import StubAnthropic


async def test_the_claude_cli_runs_through_the_proxy_with_only_a_run_token(js_store, nc, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    run_token = token("run-cli", "family")
    with StubAnthropic(steps=[("text", "Hello from behind the proxy")]) as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            env = {
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{proxy.port}", "ANTHROPIC_API_KEY": run_token,
                "HOME": str(home), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
                "ENABLE_TOOL_SEARCH": "false", "IS_SANDBOX": "1",  # tests run as root
            }
            assert "ANTHROPIC_AUTH_TOKEN" not in os.environ and "CLAUDE_CODE_OAUTH_TOKEN" not in os.environ
            options = ClaudeAgentOptions(env=env, setting_sources=[], cwd=str(tmp_path), max_turns=1, tools=[])
            messages = [m async for m in query(prompt="Say hello", options=options)]
    texts = [b.text for m in messages if isinstance(m, AssistantMessage) for b in m.content if isinstance(b, TextBlock)]
    [result] = [m for m in messages if isinstance(m, ResultMessage)]
    assert result.subtype == "success" and not result.is_error, result
    assert texts == ["Hello from behind the proxy"]
    [seen] = stub.message_requests
    assert seen.headers["x-api-key"] == REAL_KEY and seen.body["stream"] is True
    assert not any(run_token in v for v in seen.headers.values())
    [usage] = await events_of(js_store, "ModelUsageRecorded")
    assert (usage.run_id, usage.group_folder, usage.status) == ("run-cli", "family", 200)
    assert (usage.input_tokens, usage.output_tokens, usage.model) == (10, 7, seen.body["model"])
    assert usage.cost_usd == pytest.approx(result.total_cost_usd)  # our price table agrees with the CLI's


async def test_the_cli_counting_tokens_through_the_proxy_is_forwarded_and_metered_as_free_calls(js_store, nc, tmp_path):
    """``/context`` makes the CLI call ``count_tokens``, the one endpoint besides Messages it uses (issue 20)."""
    home = tmp_path / "home"
    home.mkdir()
    with StubAnthropic() as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            env = {
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{proxy.port}", "ANTHROPIC_API_KEY": token("run-ctx", "family"),
                "HOME": str(home), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
                "ENABLE_TOOL_SEARCH": "false", "IS_SANDBOX": "1",
            }
            options = ClaudeAgentOptions(env=env, setting_sources=[], cwd=str(tmp_path), max_turns=1)
            [m async for m in query(prompt="/context", options=options)]
    counted = [path for method, path in stub.seen if path.startswith("/v1/messages/count_tokens")]
    assert counted and all(method == "POST" for method, _ in stub.seen)
    usage = await events_of(js_store, "ModelUsageRecorded")
    assert sorted({u.endpoint for u in usage}) == ["count_tokens"] and len(usage) == len(counted)
    assert all((u.run_id, u.input_tokens, u.cost_usd) == ("run-ctx", 0, 0.0) for u in usage)
    assert await events_of(js_store, "SandboxRequestRefused") == []


async def test_the_cli_gives_up_at_once_when_the_api_rejects_the_credential_instead_of_retrying_for_minutes(
        js_store, nc, tmp_path):
    """Against a plain 401 the CLI retries ten times over about three minutes; the proxy's 403 stops it at the
    first answer (no CLAUDE_CODE_MAX_RETRIES here: the CLI's own retry policy is what is under test)."""
    home = tmp_path / "home"
    home.mkdir()
    with StubAnthropic(script=lambda _body: ("error", 401, "authentication_error", "invalid x-api-key")) as stub:
        async with broker(nc, js_store, tmp_path, stub.url) as proxy:
            env = {
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{proxy.port}", "ANTHROPIC_API_KEY": token("run-401", "family"),
                "HOME": str(home), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1", "ENABLE_TOOL_SEARCH": "false",
                "IS_SANDBOX": "1",
            }
            options = ClaudeAgentOptions(env=env, setting_sources=[], cwd=str(tmp_path), max_turns=1, tools=[])
            started = time.monotonic()
            with pytest.raises(Exception):  # the SDK raises on the CLI's error result
                async with asyncio.timeout(60):
                    [m async for m in query(prompt="Say hello", options=options)]
            took = time.monotonic() - started
    assert len(stub.message_requests) == 1 and took < 30, (len(stub.message_requests), took)
    [failed] = await events_of(js_store, "ModelCredentialFailed")
    assert (failed.run_id, failed.problem, failed.status) == ("run-401", "rejected", 401)
