"""NATS identities of the container deployment and their least-privilege permissions.

One nkey user per service (``SERVICE_ACCESS`` says what each may publish and answer), an ``admin`` (the only
identity allowed to create, update, delete or purge streams), a read-only ``reader`` for outside subscribers,
and a ``sandbox-auth`` user through which the runner answers the server's auth callout: sandboxes get a user
minted per run in the separate ``SANDBOX`` account (services/harness/natscallout.py).

Shapes: ``permissions_for(name)`` → the server's ``{"publish": {"allow": [...], "deny": [...]}, "subscribe":
{"allow": [...]}, "allow_responses": bool}`` map; ``Identities`` holds the seeds (secret) and public keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nkeys

from events.subjects import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM, EVENT_PREFIX, EVENT_STREAM, encode_token
from services.harness.natscallout import SANDBOX_ACCOUNT

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
               _evt("system", "refusal", encode_token(name), "SandboxRequestRefused"),
               f"{DEAD_LETTER_PREFIX}.{name}", *access.requests]
    return {"publish": {"allow": publish, "deny": ADMIN_ONLY},
            "subscribe": {"allow": [f"{inbox_prefix(name)}.>", *access.answers]},
            "allow_responses": bool(access.answers)}


def callout_permissions() -> dict:
    """The auth-callout responder: hears the server's requests and answers them, nothing else."""
    return {"publish": {"allow": [f"{inbox_prefix(CALLOUT)}.>"]},
            "subscribe": {"allow": ["$SYS.REQ.USER.AUTH"]}, "allow_responses": True}


def new_seed(prefix: int = nkeys.PREFIX_BYTE_USER) -> str:
    """A fresh nkey seed (``SU…`` for users, ``SA…`` for accounts) from 32 random bytes."""
    return nkeys.encode_seed(os.urandom(32), prefix).decode()


def public_key(seed: str) -> str:
    """The public key (``U…``/``A…``) of a seed. Errors: ``nkeys.ErrInvalidSeed`` for a malformed seed."""
    return nkeys.from_seed(seed.encode()).public_key.decode()


@dataclass
class Identities:
    """Every secret of a deployment. ``seeds`` maps identity name → user seed; ``issuer_seed`` is the account
    key that signs sandbox users; ``js_key`` the JetStream encryption key; ``run_token_key`` is shared by the runner and the broker; ``webhook_token`` is the HTTP
    channel's bearer token (the gateway listens beyond loopback in a container)."""

    seeds: dict[str, str] = field(default_factory=dict)
    issuer_seed: str = ""
    js_key: str = ""
    run_token_key: str = ""
    webhook_token: str = ""

    NAMES = (*SERVICE_ACCESS, ADMIN, READER, CALLOUT)

    @classmethod
    def generate(cls) -> "Identities":
        return cls({name: new_seed() for name in cls.NAMES}, new_seed(nkeys.PREFIX_BYTE_ACCOUNT),
                   os.urandom(32).hex(), os.urandom(32).hex(), os.urandom(24).hex())

    def complete(self) -> "Identities":
        """Add what is missing (a service added since the last ``init``) without touching existing keys."""
        fresh = Identities.generate()
        for name in self.NAMES:
            self.seeds.setdefault(name, fresh.seeds[name])
        for attr in ("issuer_seed", "js_key", "run_token_key", "webhook_token"):
            if not getattr(self, attr):
                setattr(self, attr, getattr(fresh, attr))
        return self

    def public(self, name: str) -> str:
        return public_key(self.seeds[name])

    def save(self, path: Path) -> None:
        """Write as JSON, mode 0600, atomically."""
        write_secret(path, json.dumps({"seeds": self.seeds, "issuer_seed": self.issuer_seed, "js_key": self.js_key,
                                       "run_token_key": self.run_token_key,
                                       "webhook_token": self.webhook_token}, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Identities":
        """Errors: ``ValueError`` naming the file when it is not a valid identities file."""
        try:
            data = json.loads(path.read_text())
            return cls(dict(data["seeds"]), data["issuer_seed"], data["js_key"], data["run_token_key"], data.get("webhook_token", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable identities file ({exc})") from exc


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
