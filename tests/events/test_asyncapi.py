"""docs/asyncapi.yaml is the machine-readable subscriber contract: regenerated from the models it must be
identical, it must be a structurally valid AsyncAPI 3.0 document, and real commits must validate against it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator, ValidationError

from events.asyncapi import catalogue_types, document, render
from events.catalogue.chat import MessageReceived, MessageSent
from events.catalogue.router import GroupRegistered
from events.envelope import AggregateRef, new_commit

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
TOP_LEVEL = {"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations", "components"}


def test_the_committed_document_is_what_the_models_generate():
    assert DOC.read_text(encoding="utf-8") == render(), \
        "docs/asyncapi.yaml drifted from the models: run `nanoclaw events asyncapi --out docs/asyncapi.yaml`"


def refs(node, path="#"):
    """Every ``$ref`` value in the document, with where it sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield path, value
            else:
                yield from refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{path}/{i}")


def resolve(doc, ref: str):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_a_structurally_valid_asyncapi_3_document():
    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert set(doc) <= TOP_LEVEL and doc["asyncapi"] == "3.0.0"
    assert isinstance(doc["info"]["title"], str) and isinstance(doc["info"]["version"], str)
    for server in doc["servers"].values():
        assert server["protocol"] == "nats" and server["host"]
    broken = []
    for where, ref in refs(doc):
        try:
            resolve(doc, ref)
        except (KeyError, IndexError, TypeError, AssertionError):
            broken.append(f"{where}: {ref}")
    assert broken == []
    for name, channel in doc["channels"].items():
        assert isinstance(channel["address"], str), name
        assert set(re.findall(r"{(\w+)}", channel["address"])) == set(channel.get("parameters", {})), name
        for message in channel["messages"].values():
            assert message["$ref"].startswith("#/components/messages/"), name
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel_ref = op["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        for message in op["messages"]:  # an operation's messages must be messages of its channel
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
    for name, message in doc["components"]["messages"].items():
        assert message["name"] == name and "payload" in message
    for name, schema in doc["components"]["schemas"].items():
        Draft7Validator.check_schema(schema)  # AsyncAPI's default schema format is a superset of draft 07


def test_every_catalogue_type_has_a_channel_a_receive_operation_and_exactly_its_fields():
    doc = document()
    for name, cls in catalogue_types().items():
        channel = doc["channels"][name]
        assert channel["address"] == f"nc.evt.{cls.context}.{cls.aggregate}.{{aggregateId}}.{name}"
        assert doc["operations"][f"receive{name}"]["action"] == "receive"
        schema = doc["components"]["schemas"][name]
        assert set(schema["properties"]) == set(cls.model_fields), name
        assert set(schema.get("required", [])) == {f for f, info in cls.model_fields.items() if info.is_required()}
        assert schema["additionalProperties"] is False


def payload_validator(doc, event_type: str) -> Draft7Validator:
    """A validator for ``event_type``'s message payload, resolving references against the whole document."""
    return Draft7Validator({**doc, "$ref": f"#/components/messages/{event_type}/payload"})


T = "2026-03-01T10:00:00.000Z"
SAMPLES = {
    "MessageReceived": (AggregateRef("chat", "message", "term:a/m1"),
                        MessageReceived(channel="terminal", chat_jid="term:a", message_id="m1", sender="ann",
                                        sender_name="Ann", text="hi", timestamp=T)),
    "MessageSent": (AggregateRef("chat", "outbound", "r1"),
                    MessageSent(channel="terminal", chat_jid="term:a", channel_message_id="x", sent_at=T)),
    "GroupRegistered": (AggregateRef("router", "group", "term:a"),
                        GroupRegistered(jid="term:a", name="A", folder="a", trigger="@Andy", added_at=T)),
}


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_real_commit_bodies_validate_against_their_message_and_broken_ones_do_not(event_type):
    doc = json.loads(json.dumps(document()))
    ref, payload = SAMPLES[event_type]
    body = json.loads(new_commit(ref, [payload], version=0, source="test").encode()[2])
    payload_validator(doc, event_type).validate(body)

    missing = json.loads(json.dumps(body))
    missing[0]["data"].pop(next(f for f, i in type(payload).model_fields.items() if i.is_required()))
    extra = json.loads(json.dumps(body))
    extra[0]["data"]["surprise"] = 1
    other = next(t for t in SAMPLES if t != event_type)
    for broken in (missing, extra, body[0]):  # a missing field, an unknown field, an event outside a batch
        with pytest.raises(ValidationError):
            payload_validator(doc, event_type).validate(broken)
    with pytest.raises(ValidationError):  # on another type's channel
        payload_validator(doc, other).validate(body)
