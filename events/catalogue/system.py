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
    ``stream_seq`` is its place in ``NC_EVENTS``. ``attempt``: 1 the first time; a message an operator retried
    (``DeadLetterRetried``) that failed again is dead-lettered again with the next attempt, so the dead letter
    ``<service>:<stream_seq>:<attempt>`` is unique per attempt. Aggregate id: the service name."""

    context = "system"
    aggregate = "deadletter"

    service: str
    subject: str
    stream_seq: int
    deliveries: int
    error: str
    dead_letter_seq: int | None = None
    at: UtcTimestamp
    attempt: int = 1


class DeadLetterRetried(EventPayload):
    """An operator asked the owning ``service`` to handle a dead letter again (``nanoclaw dlq retry``): its harness
    re-reads the original message from ``NC_EVENTS`` at ``stream_seq`` and hands it to its handlers, then records
    ``DeadLetterRetrySucceeded`` or dead-letters it again as ``attempt + 1``. ``attempt`` is the dead letter's
    attempt being retried; ``requested_by`` the operator (user name). Aggregate id: the service name."""

    context = "system"
    aggregate = "deadletter"

    service: str
    stream_seq: int
    attempt: int
    subject: str
    requested_by: str
    at: UtcTimestamp


class DeadLetterRetrySucceeded(EventPayload):
    """The retry of dead letter ``<service>:<stream_seq>:<attempt>`` was handled: its emits are stored.
    Aggregate id: the service name."""

    context = "system"
    aggregate = "deadletter"

    service: str
    stream_seq: int
    attempt: int
    at: UtcTimestamp


class DeadLetterDropped(EventPayload):
    """An operator gave up on dead letter ``<service>:<stream_seq>:<attempt>`` (``nanoclaw dlq drop``): it is no
    longer listed as open. The message stays in ``NC_EVENTS`` and ``NC_DLQ`` (nothing is deleted). Aggregate id:
    the service name."""

    context = "system"
    aggregate = "deadletter"

    service: str
    stream_seq: int
    attempt: int
    reason: str | None = None
    requested_by: str
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
