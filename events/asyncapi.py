"""The machine-readable subscriber contract: an AsyncAPI 3.0 document generated from the catalogue's pydantic
models and the envelope (events/envelope.py), committed as docs/asyncapi.yaml (``nanoclaw events asyncapi``
regenerates it; tests/events/test_asyncapi.py fails when the two drift).

Shape (AsyncAPI 3.0.0, https://www.asyncapi.com/docs/reference/specification/v3.0.0):

- one **channel** per event type, address ``nc.evt.<context>.<aggregate>.{aggregateId}.<EventType>`` (the subject
  of a commit whose *first* event is of that type; docs/events.md, "Subjects"), and one for dead letters;
- one **receive operation** per channel: the document describes what a subscriber does;
- one **message** per event type: headers ``Nats-Msg-Id``, ``Nc-Aggregate-Version``, ``Nc-Event-Types``; payload
  the commit body, a CloudEvents JSON batch whose first event is of the channel's type (later events of the same
  commit may be of other types of the aggregate);
- **schemas**: the envelope ``CloudEvent`` and one data schema per event type (JSON Schema as pydantic writes it,
  with references rewritten to ``#/components/schemas/…``: AsyncAPI resolves ``$ref`` against the document).

Deterministic: the same models give byte-identical YAML (sorted types, no timestamps).
"""

from __future__ import annotations

import inspect
from typing import Any

import yaml

import events.catalogue  # noqa: F401  (registers every event type)
from events.catalogue.base import EventPayload, all_event_types
from events.chain import HDR_CHAIN, HDR_CHAIN_PREV
from events.envelope import CONTENT_TYPE, HDR_TYPES, HDR_VERSION, CloudEvent
from events.subjects import DEAD_LETTER_PREFIX, EVENT_PREFIX

ASYNCAPI_VERSION = "3.0.0"
CONTRACT_VERSION = "1.0.0"
"""The subject scheme and envelope version. Within it changes are additive (docs/events.md, "Compatibility");
a breaking change to a payload becomes a new event type, never a new major version of this document."""

_REF = "#/components/schemas/{model}"


def catalogue_types() -> dict[str, type[EventPayload]]:
    """The catalogue's event types (not test ones registered by test modules), sorted by name."""
    return {name: cls for name, cls in all_event_types().items() if cls.__module__.startswith("events.catalogue")}


def _schema(model: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """``model``'s JSON schema with nested definitions hoisted into ``schemas``."""
    schema = model.model_json_schema(ref_template=_REF)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    return schema


def _doc(cls: type) -> str:
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split())


def _headers() -> dict[str, Any]:
    return {"type": "object", "required": ["Nats-Msg-Id", HDR_VERSION, HDR_TYPES], "properties": {
        "Content-Type": {"type": "string", "const": CONTENT_TYPE},
        "Nats-Msg-Id": {"type": "string", "description": "idempotency key of the commit"},
        HDR_VERSION: {"type": "string", "pattern": "^[1-9][0-9]*$",
                      "description": "the aggregate's version after this commit (decimal)"},
        HDR_TYPES: {"type": "string", "description": "comma-separated event types of the commit, in order"},
        HDR_CHAIN_PREV: {"type": "string", "pattern": "^([0-9a-f]{64})?$",
                         "description": "chain link of the aggregate's previous commit (empty for its first)"},
        HDR_CHAIN: {"type": "string", "pattern": "^[0-9a-f]{64}$",
                    "description": "this commit's chain link (docs/audit.md, \"Tamper evidence\")"},
    }}


def _first_event(name: str, cls: type[EventPayload]) -> dict[str, Any]:
    return {"allOf": [{"$ref": _REF.format(model="CloudEvent")}, {
        "type": "object",
        "properties": {
            "type": {"const": cls.cloudevents_type()},
            "eventtype": {"const": name},
            "aggregatecontext": {"const": cls.context},
            "aggregatetype": {"const": cls.aggregate},
            "schemaversion": {"const": cls.schema_version},
            "data": {"$ref": _REF.format(model=name)},
        },
    }]}


def document() -> dict[str, Any]:
    """The AsyncAPI document as plain data."""
    schemas: dict[str, Any] = {}
    envelope = _schema(CloudEvent, schemas)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    types = catalogue_types()
    for name, cls in types.items():
        schemas[name] = _schema(cls, schemas)
        messages[name] = {
            "name": name,
            "title": f"{cls.context}.{cls.aggregate} {name}",
            "summary": _doc(cls),
            "contentType": CONTENT_TYPE,
            "headers": {"$ref": _REF.format(model="CommitHeaders")},
            "payload": {"type": "array", "minItems": 1,
                        "items": [_first_event(name, cls)],
                        "additionalItems": {"$ref": _REF.format(model="CloudEvent")}},
        }
        channels[name] = {
            "address": f"{EVENT_PREFIX}.{cls.context}.{cls.aggregate}.{{aggregateId}}.{name}",
            "title": name,
            "description": f"Commits to an aggregate of type {cls.context}.{cls.aggregate} whose first event "
                           f"is {name}. Stream NC_EVENTS.",
            "parameters": {"aggregateId": {"$ref": "#/components/parameters/aggregateId"}},
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"receive{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }
    messages["DeadLetter"] = {
        "name": "DeadLetter", "title": "A message a service could not handle",
        "summary": "The original body, unchanged, with headers saying who gave up on it and why. A "
                   "MessageDeadLettered event records the same in NC_EVENTS.",
        "headers": {"type": "object", "properties": {h: {"type": "string"} for h in (
            "Nc-Error", "Nc-Service", "Nc-Original-Subject", "Nc-Original-Seq", "Nc-Deliveries")}},
        "payload": {"description": "the original message body (any bytes)"},
    }
    channels["deadLetters"] = {
        "address": f"{DEAD_LETTER_PREFIX}.{{service}}", "title": "Dead letters",
        "description": "Stream NC_DLQ.",
        "parameters": {"service": {"description": "the service that dead-lettered the message"}},
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
    }
    operations["receiveDeadLetter"] = {"action": "receive", "channel": {"$ref": "#/channels/deadLetters"},
                                       "messages": [{"$ref": "#/channels/deadLetters/messages/DeadLetter"}]}
    schemas["CloudEvent"] = envelope
    schemas["CommitHeaders"] = _headers()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "NanoClaw Bus events",
            "version": CONTRACT_VERSION,
            "description": "Every state change of NanoClaw Bus is a commit in the JetStream stream NC_EVENTS: one "
                           "message per aggregate save, its body a CloudEvents 1.0 JSON batch. Generated from "
                           "events/catalogue/ by `nanoclaw events asyncapi`; the prose contract, delivery "
                           "guarantees and compatibility rules are in docs/events.md.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats",
                              "description": "the embedded server of `nanoclaw up`; connect as the read-only "
                                             "reader (`nanoclaw events credentials`)"}},
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "parameters": {"aggregateId": {
                "description": "the aggregate id as one subject token: every character outside "
                               "[A-Za-z0-9@:+_-] becomes ~XX per UTF-8 byte (docs/events.md, \"Subjects\")"}},
        },
    }


def render() -> str:
    """The document as YAML text (what docs/asyncapi.yaml holds)."""
    return ("# Generated by `nanoclaw events asyncapi` from events/catalogue/: do not edit by hand.\n"
            + yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=120))
