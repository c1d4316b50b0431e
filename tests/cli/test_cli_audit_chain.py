"""`nanoclaw audit verify` checks the log's hash chain: on an honest log it records a checkpoint; on a copy with an
altered message it names the first one; a copy rewritten with recomputed hashes fails against the checkpoint."""

from __future__ import annotations

import json

import nats

from events.chain import HDR_CHAIN, HDR_CHAIN_PREV, link
from events.store.jetstream import JetStreamEventStore
from events.store.streams import ensure_streams
from tests.audit.scenario import History, phase
from tests.cli.test_cli import cli
from tests.events.test_chain import copied, copy_server, messages  # noqa: F401  (fixture)


async def test_audit_verify_names_the_first_broken_link_and_checks_recorded_checkpoints(nats_server, copy_server,
                                                                                         tmp_path):
    nc = await nats.connect(nats_server.url)
    await ensure_streams(nc.jetstream())
    history = History(JetStreamEventStore(nc))
    for n in range(3):
        await phase(history, n)
    original = await messages(nc)
    await nc.close()
    env = {"NANOCLAW_NATS__URLS": f'["{nats_server.url}"]'}
    book = tmp_path / "checkpoints.jsonl"
    honest = cli(["audit", "verify", "--log-only", "--record-checkpoint", str(book)], tmp_path, env)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    assert f"log chain: intact ({len(original)} messages, {len(original)} chained)" in honest.stdout
    assert json.loads(book.read_text())["seq"] == len(original)

    altered = list(original)
    k = next(i for i, (s, _, _) in enumerate(original) if s.endswith(".GroupUpdated"))
    subject, headers, body = altered[k]
    altered[k] = (subject, headers, body.replace(b"Alpha renamed", b"Alpha ruined"))
    await copied(copy_server, altered)
    copy_env = {"NANOCLAW_NATS__URLS": f'["{copy_server.url}"]'}
    broken = cli(["audit", "verify", "--log-only"], tmp_path, copy_env)
    assert broken.returncode == 1
    assert f"first problem at seq {k + 1} (altered)" in broken.stdout, broken.stdout

    forged = list(original)
    subject, headers, body = forged[k]
    body = body.replace(b"Alpha renamed", b"Alpha ruined")
    forged[k] = (subject, {**headers, HDR_CHAIN: link(headers[HDR_CHAIN_PREV], subject, headers["Nats-Msg-Id"],
                                                       headers["Nc-Aggregate-Version"], headers["Nc-Event-Types"],
                                                       body)}, body)
    # the aggregate's later commit links to the forged hash too: rewrite it as an attacker would
    later = next(i for i in range(k + 1, len(forged)) if forged[i][0].rsplit(".", 1)[0] == subject.rsplit(".", 1)[0])
    s2, h2, b2 = forged[later]
    prev = forged[k][1][HDR_CHAIN]
    forged[later] = (s2, {**h2, HDR_CHAIN_PREV: prev, HDR_CHAIN: link(prev, s2, h2["Nats-Msg-Id"],
                                                                       h2["Nc-Aggregate-Version"],
                                                                       h2["Nc-Event-Types"], b2)}, b2)
    await copied(copy_server, forged)
    unnoticed = cli(["audit", "verify", "--log-only"], tmp_path, copy_env)
    assert unnoticed.returncode == 0, "a rechained forgery passes the chain alone (docs/audit.md says so)"
    caught = cli(["audit", "verify", "--log-only", "--checkpoint", str(book)], tmp_path, copy_env)
    assert caught.returncode == 1 and f"seq {len(original)}: checkpoint" in caught.stdout, caught.stdout

    (tmp_path / "junk").write_text("not json\n")
    junk = cli(["audit", "verify", "--log-only", "--checkpoint", str(tmp_path / "junk")], tmp_path, env)
    assert junk.returncode == 2 and "junk:1: not a checkpoint line" in junk.stderr
