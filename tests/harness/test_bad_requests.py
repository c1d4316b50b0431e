"""A service's request server against bad requests (real nats-server): each gets an error answer naming the
problem, and the next good request is answered."""

from __future__ import annotations

import json

from services.harness.service import Reply, Service
from tests.harness.test_runner import run
from tests.poison import HOSTILE, NESTING


async def test_every_bad_request_gets_an_error_answer_and_the_next_good_one_is_answered(nc, js_store):
    async def echo(request, _deps):
        return Reply.success({"echo": request.data.get("n")})

    runner = await run(Service("asker", {}, requests={"nc.ipc.*.echo": echo}), nc, js_store)
    bad = {
        b"[" * NESTING + b"]" * NESTING: "nested too deeply",
        b'{"n": ' + b"[" * NESTING + b"]" * NESTING + b"}": "nested too deeply",
        b"\x00\xff{": "not a JSON object",
        b"[1, 2]": "got list",
        json.dumps({HOSTILE: HOSTILE}).encode() + b"\xff": "not a JSON object",
    }
    try:
        for body, problem in bad.items():
            answer = json.loads((await nc.request("nc.ipc.g.echo", body, timeout=10)).data)
            assert answer["ok"] is False and problem in answer["error"], (body[:20], answer)
            good = json.loads((await nc.request("nc.ipc.g.echo", b'{"n": 7}', timeout=10)).data)
            assert good == {"ok": True, "result": {"echo": 7}}
        assert runner.healthy
    finally:
        await runner.stop()
