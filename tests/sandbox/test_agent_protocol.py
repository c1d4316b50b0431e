"""The agent's pieces in process: stdin parsing, marker format, the script pre-check, the NATS tool call.

No model here; the tool calls go to a real nats-server (the ``nats_server`` fixture)."""

from __future__ import annotations

import ast
import io
import json
import sys
from pathlib import Path

import nats
import pytest

from sandbox.agent import script, tools
from sandbox.agent.protocol import OUTPUT_END, OUTPUT_START, InputError, MarkerWriter, parse_input
from tests.sandbox import agent_input

AGENT_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "agent"


def valid() -> dict:
    return agent_input("nats://127.0.0.1:4222", "http://127.0.0.1:1")


# --- stdin ---------------------------------------------------------------------------------------------------
def test_a_valid_input_parses():
    inp = parse_input(json.dumps(valid()))
    assert (inp.run_id, inp.group_folder, inp.is_main, inp.session_id) == ("r1", "grp", False, None)
    assert inp.nats.input_subject == "nc.run.grp.r1.input" and inp.model.token == "proxy-token-r1"


def test_secrets_stay_out_of_reprs():
    inp = parse_input(json.dumps(valid()))
    assert "secret" not in repr(inp) and "proxy-token" not in repr(inp)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("run_id"), "run_id: missing"),
    (lambda d: d.update(is_main="yes"), "is_main: expected bool, got str"),
    (lambda d: d["nats"].pop("url"), "nats.url: missing"),
    (lambda d: d["nats"].update(inbox_prefix=None), "nats.inbox_prefix: expected str, got null"),
    (lambda d: d.update(model=None), "model: expected object, got null"),
    (lambda d: d["model"].update(token=""), "model.token: must not be empty"),
    (lambda d: d.update(session_id=5), "session_id: expected str, got int"),
])
def test_a_bad_field_is_named(mutate, field):
    data = valid()
    mutate(data)
    with pytest.raises(InputError) as err:
        parse_input(json.dumps(data))
    assert str(err.value) == field


@pytest.mark.parametrize("text, start", [("{not json", "stdin is not valid JSON"),
                                         ("[1]", "stdin: expected a JSON object, got list"),
                                         (b"\xff\xfe", "stdin is not valid JSON")])
def test_stdin_that_is_not_an_object_is_refused(text, start):
    with pytest.raises(InputError, match="^" + start.replace("[", r"\[")):
        parse_input(text)


# --- markers -------------------------------------------------------------------------------------------------
def test_a_marker_is_one_block_with_all_five_keys_and_idle_marks_the_end_of_a_query():
    buf = io.BytesIO()
    MarkerWriter(buf).success("héllo", "s1")
    MarkerWriter(buf).error("boom", None)
    MarkerWriter(buf).success(None, "s1", idle=True)
    lines = buf.getvalue().decode().splitlines()
    assert lines[0] == OUTPUT_START and lines[2] == OUTPUT_END and lines[3] == OUTPUT_START
    assert json.loads(lines[1]) == {"status": "success", "result": "héllo", "newSessionId": "s1", "error": None,
                                    "idle": False}
    assert json.loads(lines[4]) == {"status": "error", "result": None, "newSessionId": None, "error": "boom",
                                    "idle": False}
    assert json.loads(lines[7]) == {"status": "success", "result": None, "newSessionId": "s1", "error": None,
                                    "idle": True}


# --- task script ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stdout, wake, data", [
    ('noise\n{"wakeAgent": true, "data": {"n": 2}}\n', True, {"n": 2}),
    ('{"wakeAgent": false}', False, None),
    ('{"wakeAgent": "yes"}', False, None),
    ('{"wakeAgent": true}\nnot json', False, None),
    ("", False, None),
])
def test_script_verdict_is_the_last_line(stdout, wake, data):
    outcome = script.parse_output(stdout)
    assert (outcome.wake, outcome.data) == (wake, data)


async def test_a_script_runs_with_bash_in_the_group_dir(tmp_path):
    outcome = await script.run_script('echo "{\\"wakeAgent\\": true, \\"data\\": \\"$(basename "$PWD")\\"}"',
                                      cwd=str(tmp_path))
    assert outcome.wake and outcome.data == tmp_path.name


@pytest.mark.parametrize("body, reason", [("exit 3", "exited with code 3"),
                                          ("sleep 30", "timed out after 0.5 s")])
async def test_a_failing_or_slow_script_does_not_wake(body, reason):
    outcome = await script.run_script(body, timeout_s=0.5)
    assert not outcome.wake and outcome.reason == reason


def test_the_woken_prompt_carries_data_and_instructions():
    assert script.script_prompt({"a": 1}, "do it") == (
        '[SCHEDULED TASK]\n\nScript output:\n{\n  "a": 1\n}\n\nInstructions:\ndo it')


# --- tools over NATS -----------------------------------------------------------------------------------------
async def test_tool_calls_map_service_replies(nats_server):
    nc = await nats.connect(nats_server.url)
    replies = {"a": b'{"ok": true, "result": "Message sent."}', "b": b'{"ok": true, "result": [{"id": "t1"}]}',
               "c": b'{"ok": false, "error": "Only the main group can register new groups."}', "d": b"nope",
               "e": b'{"ok": true}'}
    seen = []

    async def responder(msg):
        seen.append((msg.subject, json.loads(msg.data)))
        await msg.respond(replies[msg.subject.rsplit(".", 1)[1]])

    await nc.subscribe("svc.>", cb=responder)
    call = tools.call_service
    try:
        assert await call(nc, "svc.a", "router", {"text": "hi"}) == {
            "content": [{"type": "text", "text": "Message sent."}]}
        assert json.loads((await call(nc, "svc.b", "scheduler", {}))["content"][0]["text"]) == [{"id": "t1"}]
        assert await call(nc, "svc.c", "router", {}) == {
            "content": [{"type": "text", "text": "Only the main group can register new groups."}], "is_error": True}
        assert await call(nc, "svc.d", "router", {}) == {
            "content": [{"type": "text", "text": "router sent an unreadable reply"}], "is_error": True}
        assert (await call(nc, "svc.e", "router", {}))["content"][0]["text"] == "Done."
        assert await call(nc, "nobody.home", "scheduler", {}) == {
            "content": [{"type": "text", "text": "scheduler not available"}], "is_error": True}
        assert seen[0] == ("svc.a", {"text": "hi"})
    finally:
        await nc.close()


async def test_a_tool_call_without_an_answer_is_an_error(nats_server):
    nc = await nats.connect(nats_server.url)
    async def never_answer(msg):
        pass

    await nc.subscribe("slow.>", cb=never_answer)
    try:
        result = await tools.call_service(nc, "slow.x", "scheduler", {}, timeout_s=0.3)
        assert result["is_error"] is True
        assert result["content"][0]["text"].startswith("scheduler did not answer within 0.3 s")
    finally:
        await nc.close()


def test_register_group_is_offered_to_main_only():
    assert "register_group" in tools.tool_names(True)
    assert "register_group" not in tools.tool_names(False)
    assert set(tools.tool_names(True)) == {"send_message", "register_group", "schedule_task", "list_tasks",
                                           "pause_task", "resume_task", "cancel_task", "update_task",
                                           "gov_create_task", "gov_transition", "gov_approve", "gov_assign",
                                           "gov_list", "gov_get", "gov_products", "gov_product_save", "ext_call"}


# --- self-contained ------------------------------------------------------------------------------------------
def test_the_agent_imports_only_the_stdlib_the_sdk_and_nats():
    allowed = {"claude_agent_sdk", "nats", "__future__"}
    problems = []
    for file in AGENT_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top not in allowed and top not in sys.stdlib_module_names:
                    problems.append(f"{file.name} imports {name}")
    assert problems == []
