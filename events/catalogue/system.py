"""System events: what the harness itself records."""

from __future__ import annotations

from typing import Literal

from events.catalogue.base import EventPayload
from events.catalogue.types import UtcTimestamp


class MessageDeadLettered(EventPayload):
    """A service gave up on a message: it failed ``max_deliver`` times, or it is not a valid commit (not a
    CloudEvents batch, an event type not in the catalogue, a payload that does not validate). Service
    ``projections`` records, once for the whole log, each message its read models skipped (docs/events.md,
    "Bad messages in the log"). The message itself is kept on ``nc.dlq.<service>`` at ``dead_letter_seq``;
    ``stream_seq`` is its place in ``NC_EVENTS``. Aggregate id: the service name."""

    context = "system"
    aggregate = "deadletter"

    service: str
    subject: str
    stream_seq: int
    deliveries: int
    error: str
    dead_letter_seq: int | None = None
    at: UtcTimestamp


class SandboxRequestRefused(EventPayload):
    """Something a sandboxed agent asked for was refused as a security decision, and had no other effect: a
    tool its group may not call (``ipc``), a reply subject outside its own inbox (``reply_subject``), a model-proxy
    endpoint the agent does not need (``model_proxy``), or a path in its own tree that the host will not follow
    (``host_path``). Bad arguments are not refusals (they get an error reply only). ``operation`` names what was
    asked (a tool, ``POST /v1/files``, ``mkdir logs``); ``reason`` why it was refused. Aggregate id: the refusing
    service (one ledger per service, like dead letters); ``group_folder`` and ``run_id`` name the sandbox."""

    context = "system"
    aggregate = "refusal"

    service: str
    group_folder: str
    run_id: str | None = None
    surface: Literal["ipc", "reply_subject", "model_proxy", "host_path"]
    operation: str
    reason: str
    at: UtcTimestamp
