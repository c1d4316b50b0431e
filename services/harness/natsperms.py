"""What each NATS identity may do on the bus: one least-privilege permission map per service, plus the admin,
the read-only reader and the auth-callout responder. Shared by every deployment: the embedded server of
`nanoclaw up` (services/harness/natsauth.py writes these as password users) and the container deployment
(deploy/natsconf.py writes them as nkey users), so a service has the same rights wherever it runs.

Shapes: ``permissions_for(name)`` → the server's ``{"publish": {"allow": [...], "deny": [...]}, "subscribe":
{"allow": [...]}, "allow_responses": bool}`` map (nats-server's authorization permissions,
https://docs.nats.io/running-a-nats-service/configuration/securing_nats/authorization).
"""

from __future__ import annotations

from dataclasses import dataclass

from events.subjects import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM, EVENT_PREFIX, EVENT_STREAM, encode_token

SANDBOX_ACCOUNT = "SANDBOX"
SERVICES_ACCOUNT = "NC"
ADMIN, READER, CALLOUT = "admin", "reader", "sandbox-auth"
IPC_TOOLS_ROUTER = ("send_message", "register_group")
IPC_TOOLS_SCHEDULER = ("schedule_task", "list_tasks", "pause_task", "resume_task", "cancel_task", "update_task")
IPC_TOOLS_GOVERNANCE = ("gov_create_task", "gov_transition", "gov_approve", "gov_assign", "gov_list", "gov_get",
                        "gov_products", "gov_product_save")
IPC_TOOLS_BROKER = ("ext_call",)


@dataclass(frozen=True)
class ServiceAccess:
    """What one service does on the bus besides consuming its durable consumer: ``emits`` are event subject
    patterns (``nc.evt.<context>.<aggregate>.<id>.<first event type>``), ``answers`` request subjects it
    serves, ``requests`` subjects it sends requests to."""

    emits: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()


def _evt(*parts: str) -> str:
    return ".".join((EVENT_PREFIX, *parts))


def _tools(*tools: str) -> tuple[str, ...]:
    """The agents' tool requests ``nc.ipc.<folder>.<tool>`` a service answers, for every folder."""
    return tuple(f"nc.ipc.*.{tool}" for tool in tools)


# A commit's subject ends with its *first* event's type, so a service that shares an aggregate with another
# (chat.outbound: the router, and the scheduler's error notices, request; the gateway records the receipt) is
# limited to its own first events. NATS wildcards match whole tokens only, so an aggregate id prefix (the
# governance runs' ``gov:``) cannot be enforced; the first event type can.
SERVICE_ACCESS: dict[str, ServiceAccess] = {
    "gateway": ServiceAccess(emits=(_evt("chat", "message", ">"), _evt("chat", "chat", ">"), _evt("chat", "channel", ">"),
                                    _evt("chat", "outbound", "*", "MessageSent"),
                                    _evt("chat", "outbound", "*", "MessageDeliveryFailed"))),
    "router": ServiceAccess(emits=(_evt("router", ">"), _evt("chat", "outbound", "*", "OutboundMessageRequested")),
                            answers=_tools(*IPC_TOOLS_ROUTER)),
    "queue": ServiceAccess(emits=(_evt("queue", ">"),)),
    "runner": ServiceAccess(emits=(_evt("agent", ">"),), requests=("nc.run.>",)),
    # The model proxy's usage ledger and the external-access broker's calls and refusals. Capability grants and
    # denies (broker.capability) are the operator's (`nanoclaw ext`, as the admin), never the service's.
    "broker": ServiceAccess(emits=(_evt("broker", "usage", "*", "ModelUsageRecorded"),
                                   _evt("broker", "usage", "*", "ModelRequestRefused"),
                                   _evt("broker", "credential", "*", "ModelCredentialFailed"),
                                   _evt("broker", "extcall", "*", "ExtCallStarted"),
                                   _evt("broker", "extcall", "*", "ExtCallFinished"),
                                   _evt("broker", "extrefusal", "*", "ExtCallRefused")),
                            answers=_tools(*IPC_TOOLS_BROKER)),
    # Error notices to the task's chat (scheduler.report_errors) are outbound requests.
    "scheduler": ServiceAccess(emits=(_evt("scheduler", ">"),
                                      _evt("chat", "outbound", "*", "OutboundMessageRequested")),
                               answers=_tools(*IPC_TOOLS_SCHEDULER)),
    # The dispatch loop hands a task to the group queue as a task run on ``scheduler.task/gov:<dispatch key>``.
    "governance": ServiceAccess(emits=(_evt("governance", ">"), _evt("scheduler", "task", "*", "TaskRunRequested")),
                                answers=_tools(*IPC_TOOLS_GOVERNANCE)),
    "projections": ServiceAccess(),
}

# Stream administration: nobody but the admin (who has no permissions block at all).
ADMIN_ONLY = ["$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>",
              "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.SNAPSHOT.>",
              "$JS.API.STREAM.RESTORE.>", "$JS.API.ACCOUNT.PURGE.>", "$JS.API.META.>", "$JS.API.SERVER.>"]


def inbox_prefix(name: str) -> str:
    """The identity's private inbox prefix (``_INBOX_<name>``): replies to its requests land only there."""
    return f"_INBOX_{name.replace('-', '_')}"


def _reading(stream: str, durable: str | None = None) -> list[str]:
    """Reading a stream: info, direct gets (aggregate loads), unnamed ephemeral/ordered push consumers (read
    models), and, for a service, creating, updating and pulling from only its own ``durable`` (so it cannot
    re-filter or take another's messages). Without ``durable`` (outside tools, which may name their consumers):
    any consumer. No consumer deletes: the services never delete one, and a delete could remove another's."""
    api = "$JS.API"
    named = [f"{api}.CONSUMER.CREATE.{stream}.{durable}", f"{api}.CONSUMER.CREATE.{stream}.{durable}.>"] \
        if durable else [f"{api}.CONSUMER.CREATE.{stream}.>"]
    return [f"{api}.STREAM.INFO.{stream}", f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>",
            f"{api}.CONSUMER.CREATE.{stream}", *named, f"{api}.CONSUMER.INFO.{stream}.*",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{durable or '*'}", f"$JS.FC.{stream}.>"]


def _service_durables(stream: str) -> list[str]:
    """Every service's durable consumer on ``stream`` (creating, re-filtering, pulling from it): an outside
    subscriber pulling a service's messages without acking would have them redelivered until they are
    dead-lettered. Outside tools name their own consumers anything else."""
    api = "$JS.API"
    return [subject for service in SERVICE_ACCESS for durable in [f"svc_{service}"]
            for subject in (f"{api}.CONSUMER.CREATE.{stream}.{durable}", f"{api}.CONSUMER.CREATE.{stream}.{durable}.>",
                            f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
                            f"{api}.CONSUMER.MSG.NEXT.{stream}.{durable}", f"$JS.ACK.{stream}.{durable}.>")]


def permissions_for(name: str) -> dict:
    """The server permissions of service ``name`` (or ``reader``).

    Errors: ``ValueError`` naming an unknown identity.
    """
    if name == READER:
        # Acks of its own consumers (an outside tool's durable pull consumer), never of a service's.
        return {"publish": {"allow": ["$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
                                      *_reading(EVENT_STREAM), *_reading(DEAD_LETTER_STREAM),
                                      f"$JS.ACK.{EVENT_STREAM}.>", f"$JS.ACK.{DEAD_LETTER_STREAM}.>"],
                            "deny": [*ADMIN_ONLY, *_service_durables(EVENT_STREAM)]},
                # Outside tools use the default inbox prefix; services use private ones, so this reads no replies.
                "subscribe": {"allow": ["_INBOX.>", f"{inbox_prefix(READER)}.>", f"{EVENT_PREFIX}.>"]},
                "allow_responses": False}
    if name not in SERVICE_ACCESS:
        raise ValueError(f"unknown NATS identity {name!r}; known: {', '.join([*SERVICE_ACCESS, READER])}")
    access = SERVICE_ACCESS[name]
    durable = f"svc_{name}"
    publish = ["$JS.API.INFO", *_reading(EVENT_STREAM, durable), f"$JS.API.STREAM.INFO.{DEAD_LETTER_STREAM}",
               f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENT_STREAM}.{durable}", f"$JS.ACK.{EVENT_STREAM}.{durable}.>",
               *access.emits, _evt("system", "deadletter", encode_token(name), "MessageDeadLettered"),
               # The outcome of an operator's `nanoclaw dlq retry` (services/harness/redrive.py).
               _evt("system", "deadletter", encode_token(name), "DeadLetterRetrySucceeded"),
               _evt("system", "refusal", encode_token(name), "SandboxRequestRefused"),
               f"{DEAD_LETTER_PREFIX}.{name}", *access.requests]
    return {"publish": {"allow": publish, "deny": ADMIN_ONLY},
            "subscribe": {"allow": [f"{inbox_prefix(name)}.>", *access.answers]},
            "allow_responses": bool(access.answers)}


def callout_permissions() -> dict:
    """The auth-callout responder: hears the server's requests and answers them, nothing else."""
    return {"publish": {"allow": [f"{inbox_prefix(CALLOUT)}.>"]},
            "subscribe": {"allow": ["$SYS.REQ.USER.AUTH"]}, "allow_responses": True}
