"""The `nanoclaw` command end to end: up starts and stops cleanly, doctor tells the truth, audit works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from events.catalogue.chat import ChatNameSynced
from events.envelope import AggregateRef, new_commit
from events.store.jetstream import JetStreamEventStore
from events.store.streams import ensure_streams
from services.harness.deadletter import dead_letter
from services.harness.natsserver import find_nats_server
from tests.docker_support import agent_image
from tests.events.store_contract import CounterIncremented
from tests.poison import publish_bad
from tests.stub_anthropic import StubAnthropic

NANOCLAW = [sys.executable, "-m", "services.cli.main"]
REPO = Path(__file__).resolve().parents[2]


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})}
    return subprocess.run(NANOCLAW + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def test_up_starts_the_embedded_nats_and_stops_cleanly_on_ctrl_c(tmp_path):
    agent_image()  # `up` builds the sandbox image when missing; built here first, so the 30 s below is start-up only
    env = {**os.environ, "PYTHONPATH": str(REPO), "NANOCLAW_CHANNELS": '{"http": {"port": 0}}',
           "NANOCLAW_CRED_ANTHROPIC_API_KEY": "sk-ant-test-not-called"}
    proc = subprocess.Popen(NANOCLAW + ["up", "--port", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run_file = tmp_path / "data" / "run" / "nats.url"
    try:
        deadline = time.monotonic() + 30
        while not run_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert run_file.exists(), proc.stderr.read() if proc.poll() is not None else "no run file"
        doctor = cli(["doctor"], tmp_path, {"NANOCLAW_CRED_ANTHROPIC_API_KEY": "sk-ant-test-not-called"})
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "✓ stream NC_EVENTS" in doctor.stdout
        # the upstream is not reachable from the test: a warning that names why, never the key
        assert "! Claude credential: cannot check:" in doctor.stdout and "sk-ant" not in doctor.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "NanoClaw Bus stopped" in err and not run_file.exists()
    # stderr is a pipe, not a terminal: the console holds JSON lines only (README.md), progress lines included
    logged = [json.loads(line) for line in err.splitlines()]
    assert {"NanoClaw Bus up: services gateway, router, queue, runner, scheduler, broker, projections; logs in data/logs; "
            "Ctrl+C stops", "NanoClaw Bus stopped"} <= {line["event"] for line in logged}
    assert (tmp_path / "data" / "logs" / "nanoclaw.log").read_text().count('"service started"') >= 1
    leftover = subprocess.run(["pgrep", "-f", f"{find_nats_server()} -c {tmp_path}"], capture_output=True)
    assert leftover.returncode == 1, "the embedded nats-server outlived `nanoclaw up`"


def _without_credentials() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NANOCLAW_CRED_")}


def bare(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command with no Claude credential anywhere (none in this environment, no credentials.yml in ``cwd``)."""
    full_env = {**_without_credentials(), "PYTHONPATH": str(REPO), "COLUMNS": "80", **(env or {})}
    return subprocess.run(NANOCLAW + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)


def test_up_without_a_claude_credential_refuses_in_one_line_with_status_2_and_starts_nothing(tmp_path):
    result = bare(["up", "--port", "0"], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: no Claude credential: set anthropic_api_key (or claude_code_oauth_token) in credentials.yml, or "
        "NANOCLAW_CRED_ANTHROPIC_API_KEY / NANOCLAW_CRED_CLAUDE_CODE_OAUTH_TOKEN; the runner and broker cannot "
        "answer a message without it"]
    assert not (tmp_path / "data").exists()  # no lock, log, NATS store or run file: nothing was started
    leftover = subprocess.run(["pgrep", "-f", f"{find_nats_server()} -c {tmp_path}"], capture_output=True)
    assert leftover.returncode == 1


def test_without_the_runner_and_broker_no_claude_credential_is_needed(tmp_path):
    # services without an agent (e.g. a gateway-only node) are not refused; `doctor` says it is not needed
    doctor = bare(["doctor"], tmp_path, {"NANOCLAW_SERVICES": '["gateway", "router"]'})
    assert "✓ Claude credential: not needed" in doctor.stdout, doctor.stdout


def test_doctor_says_the_claude_credential_is_missing_and_fails(tmp_path):
    result = bare(["doctor"], tmp_path)
    assert result.returncode == 1
    assert "✗ Claude credential: missing: no Claude credential: set anthropic_api_key" in result.stdout, result.stdout


def test_service_broker_without_a_claude_credential_refuses_to_start(tmp_path):
    result = bare(["service", "broker"], tmp_path, {"NANOCLAW_NATS__URLS": '["nats://127.0.0.1:1"]'})
    assert result.returncode == 2 and "error: no Claude credential" in result.stderr, result.stderr


def test_doctor_fails_and_says_why_when_nats_is_unreachable(tmp_path):
    result = cli(["doctor"], tmp_path, {"NANOCLAW_NATS__URLS": '["nats://127.0.0.1:1"]', "NANOCLAW_NATS__CONNECT_TIMEOUT_S": "1"})
    assert result.returncode == 1
    assert "✗ NATS reachable: cannot reach NATS at nats://127.0.0.1:1" in result.stdout


def test_a_bad_config_fails_at_boot_naming_the_key(tmp_path):
    (tmp_path / "config.yml").write_text("harness:\n  max_deliver: 0\n")
    result = cli(["doctor"], tmp_path)
    assert result.returncode == 2 and "harness.max_deliver" in result.stderr


async def test_audit_rebuild_and_verify_from_the_command_line(nats_server, tmp_path):
    nc = await nats.connect(nats_server.url)
    store = JetStreamEventStore(nc)
    await ensure_streams(nc.jetstream())
    for i in range(20):  # catalogue events: the command knows no test event types
        await store.append(name_synced(f"term:k{i}"), expected_seq=0)
    await nc.close()
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}
    rebuilt = tmp_path / "rebuilt.db"
    result = cli(["audit", "rebuild", "--db", str(rebuilt)], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "40 event applications" in result.stdout  # event_log and chats
    again = cli(["audit", "rebuild", "--db", str(rebuilt)], tmp_path, env)
    assert again.returncode == 2 and "exists" in again.stderr
    ok = cli(["audit", "verify", "--db", str(rebuilt)], tmp_path, env)
    assert ok.returncode == 0 and "clean" in ok.stdout, ok.stdout + ok.stderr
    import sqlite3
    db = sqlite3.connect(rebuilt)
    db.execute("DELETE FROM event_log WHERE seq = 3")
    db.commit()
    db.close()
    bad = cli(["audit", "verify", "--db", str(rebuilt)], tmp_path, env)
    assert bad.returncode == 1 and "event_log" in bad.stdout and "differ" in bad.stdout


def name_synced(jid: str):
    """A one-event commit of a catalogue event type."""
    return new_commit(AggregateRef("chat", "chat", jid), [ChatNameSynced(channel="terminal", chat_jid=jid, name=jid,
                                                                         at="2026-03-01T10:00:00.000Z")],
                      version=0, source="test")


async def test_audit_lists_the_bad_messages_of_the_log_and_verify_fails_only_while_one_is_not_dead_lettered(nats_server, tmp_path):
    nc = await nats.connect(nats_server.url)
    store = JetStreamEventStore(nc)
    await ensure_streams(nc.jetstream())
    await store.append(name_synced("term:before"), expected_seq=0)
    bad = await publish_bad(nc, name_synced("term:like"), missing="name")
    await store.append(name_synced("term:after"), expected_seq=0)
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}
    rebuilt = tmp_path / "rebuilt.db"
    result = cli(["audit", "rebuild", "--db", str(rebuilt)], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "4 event applications" in result.stdout and f"{len(bad)} message(s) of the log skipped" in result.stdout
    assert all(f"bad-{kind}" in result.stdout for kind in bad), result.stdout

    unrecorded = cli(["audit", "verify", "--db", str(rebuilt)], tmp_path, env)
    assert unrecorded.returncode == 1, unrecorded.stdout + unrecorded.stderr
    seqs = ", ".join(str(seq) for seq in sorted(bad.values()))
    assert f"{len(bad)} skipped message(s) have no MessageDeadLettered record (seq {seqs})" in unrecorded.stdout
    assert "differ" not in unrecorded.stdout and "not in the catalogue" in unrecorded.stdout

    for kind, seq in bad.items():  # as the projections service records them
        raw = await nc.jetstream().get_msg("NC_EVENTS", seq)
        await dead_letter(nc, store, service="projections", subject=raw.subject, seq=seq, data=raw.data,
                          headers=raw.headers, deliveries=1, error=kind)
    await nc.close()
    recorded = cli(["audit", "verify", "--db", str(rebuilt)], tmp_path, env)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert f"{len(bad)} message(s) of the log skipped (not valid commits, or a projection failed on them): seq {seqs}" \
        in recorded.stdout
    assert "clean" in recorded.stdout and "projections" in recorded.stdout


def test_events_tail_prints_events_readably(nats_server, tmp_path):
    import asyncio

    async def seed():
        nc = await nats.connect(nats_server.url)
        from events.store.streams import ensure_streams
        await ensure_streams(nc.jetstream())
        await JetStreamEventStore(nc).append(new_commit(AggregateRef("test", "counter", "a@g.us"),
                                             [CounterIncremented(by=7)], version=0, source="test"), expected_seq=0)
        await nc.close()

    asyncio.run(seed())
    result = cli(["events", "tail", "--since", "0", "--limit", "1"], tmp_path, {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'})
    assert result.returncode == 0, result.stderr
    assert "CounterIncremented test.counter/a@g.us v1" in result.stdout and '{"by": 7}' in result.stdout


@pytest.mark.parametrize("command", [["up", "--port", "0"], ["doctor"], ["groups", "list"]])
def test_a_wrong_key_or_type_in_a_service_section_stops_the_command_before_it_starts_naming_the_full_path(tmp_path, command):
    (tmp_path / "config.yml").write_text("channels:\n  http:\n    port: eighty\nqueue:\n  max_concurent: 3\n"
                                         "runner:\n  cpus: lots\nbroker:\n  model_proxy:\n    port: abc\n")
    result = cli(command, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines] == ["channels.http.port", "queue.max_concurent", "runner.cpus",
                                                      "broker.model_proxy.port"]
    assert all(line.startswith("configuration error: config.yml: ") for line in lines)
    assert "Traceback" not in result.stderr and "up" not in result.stdout and not (tmp_path / "data").exists()


def test_a_too_short_run_token_key_stops_up_with_one_clear_line(tmp_path):
    (tmp_path / "credentials.yml").write_text("run_token_key: tooshort\n")
    result = cli(["up", "--port", "0"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("configuration error: credentials.yml: run_token_key: must be at least 16 bytes; use a "
                                     "random value, e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")


def test_doctor_says_plainly_that_the_bus_is_not_running_instead_of_counting_streams(tmp_path):
    # a credential and an unreachable upstream: the only warnings left are the bus and "cannot check"
    result = cli(["doctor"], tmp_path, {"NANOCLAW_CRED_ANTHROPIC_API_KEY": "sk-ant-test-not-called",
                                        "NANOCLAW_BROKER": '{"model_proxy": {"upstream_url": "http://127.0.0.1:1"}}'})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "! bus: NOT running: no `nanoclaw up` on" in result.stdout and "start it with `nanoclaw up`" in result.stdout
    assert "streams" not in result.stdout


def test_doctor_never_prints_the_nats_password_or_any_secret(nats_server, tmp_path):
    (tmp_path / "credentials.yml").write_text("anthropic_api_key: sk-ant-SECRET-KEY\nwebhook_token: SECRET-WEBHOOK\n"
                                              "nats:\n  password: SECRET-NATS-CRED\n")
    url = nats_server.url.replace("nats://", "nats://services:SECRET-NATS-PASS@")
    result = cli(["doctor"], tmp_path, {"NANOCLAW_NATS__URLS": f'["{url}"]',
                                        "NANOCLAW_BROKER": '{"model_proxy": {"upstream_url": "http://127.0.0.1:1"}}'})
    assert "✓ NATS reachable: 127.0.0.1:" in result.stdout, result.stdout + result.stderr
    assert "SECRET" not in result.stdout + result.stderr


def test_doctor_checks_the_claude_credential_against_the_model_upstream(tmp_path):
    env = lambda stub: {"NANOCLAW_BROKER": f'{{"model_proxy": {{"upstream_url": "{stub.url}"}}}}'}  # noqa: E731
    with StubAnthropic(api_keys={"sk-ant-good"}) as stub:
        (tmp_path / "credentials.yml").write_text("anthropic_api_key: sk-ant-good\n")
        good = cli(["doctor"], tmp_path, env(stub))
        (tmp_path / "credentials.yml").write_text("anthropic_api_key: sk-ant-revoked\n")
        bad = cli(["doctor"], tmp_path, env(stub))
        asked = [(r.path, r.headers.get("x-api-key"), r.headers.get("anthropic-version")) for r in stub.requests]
    assert f"✓ Claude credential: API key accepted by {stub.url}" in good.stdout and good.returncode == 0
    assert f"✗ Claude credential: API key rejected by {stub.url} (401:" in bad.stdout and bad.returncode == 1
    assert "sk-ant-revoked" not in bad.stdout
    assert asked == [("/v1/models", "sk-ant-good", "2023-06-01"), ("/v1/models", "sk-ant-revoked", "2023-06-01")]


def test_doctor_says_when_it_cannot_check_the_credential(tmp_path):
    (tmp_path / "credentials.yml").write_text("anthropic_api_key: sk-ant-x\n")
    result = cli(["doctor"], tmp_path, {"NANOCLAW_BROKER": '{"model_proxy": {"upstream_url": "http://127.0.0.1:1"}}'})
    assert "! Claude credential: cannot check: http://127.0.0.1:1 did not answer" in result.stdout
    assert result.returncode == 0, result.stdout
