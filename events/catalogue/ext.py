"""External-access broker events (issue: governance kernel and external-access broker).

Two kinds of aggregate:

- ``broker/capability/<folder>:<provider>``: what a group may do with one provider. Grants (L1 read-only,
  L2 write, L3 deploy/merge), the L3 proposal that a second, distinct approver turns into a grant (the two-man
  rule), revocations, denies and lifted denies; its first commit starts with ``ExtCapabilityOpened``. Written
  by people through ``nanoclaw ext …``.
- ``broker/extcall/<folder>:<idempotency key>``: one external call. ``ExtCallStarted`` is appended with
  optimistic concurrency (the aggregate must be new), so the first claimer of a key is the only one that
  calls out; ``ExtCallFinished`` records the outcome.

Refused calls are facts on ``broker/extrefusal/<folder>``. No event holds a call's parameters or a secret:
``params_hash`` is an HMAC-SHA256 (hex) of the canonical parameters under the group's audit key, and a
result is stored only sealed (AES-GCM under the group's result key), because responses echo parameters.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.catalogue.base import EventPayload
from events.catalogue.types import UtcTimestamp

Level = Literal[1, 2, 3]
Decision = Literal["denied", "insufficient", "expired", "not_allowed", "key_reused"]
Outcome = Literal["ok", "failed"]


class _CapabilityEvent(EventPayload):
    context = "broker"
    aggregate = "capability"

    group_folder: str
    provider: str


class ExtCapabilityOpened(_CapabilityEvent):
    """The first change to a group's capabilities for a provider; always in the same commit as that change
    (a grant, a proposal or a deny). Aggregate id: ``<folder>:<provider>``."""


class ExtCapabilityProposed(_CapabilityEvent):
    """The first approver asked for an L3 (deploy/merge) grant; it holds no power until a second, distinct
    approver approves it (``ExtCapabilityGranted``). Aggregate id: ``<folder>:<provider>``."""

    grant_id: str
    level: Level
    product: str | None = None
    proposed_by: str
    reason: str = ""
    proposed_at: UtcTimestamp


class ExtCapabilityGranted(_CapabilityEvent):
    """A grant is active: calls of the group to the provider up to ``level`` are allowed (for ``product``
    only when set; unscoped grants cover every product). ``approvers``: one for L1/L2, the proposer and a
    second person for L3. ``expires_at``: granted_at + 7 days for L2 and L3, none for L1."""

    grant_id: str
    level: Level
    product: str | None = None
    approvers: list[str]
    reason: str = ""
    granted_at: UtcTimestamp
    expires_at: UtcTimestamp | None = None


class ExtCapabilityRevoked(_CapabilityEvent):
    """A grant (active or still proposed) was withdrawn."""

    grant_id: str
    revoked_by: str
    reason: str = ""
    revoked_at: UtcTimestamp


class ExtCapabilityDenied(_CapabilityEvent):
    """The group may not use the provider (for ``product`` only, or for everything when it is None),
    whatever it was granted: a deny wins over every grant until it is lifted."""

    product: str | None = None
    denied_by: str
    reason: str = ""
    denied_at: UtcTimestamp


class ExtCapabilityDenyLifted(_CapabilityEvent):
    """A deny was lifted; the group's grants apply again."""

    product: str | None = None
    lifted_by: str
    reason: str = ""
    lifted_at: UtcTimestamp


class ExtCallStarted(EventPayload):
    """The broker claimed an idempotency key and is calling out. ``level``: the level the call needs;
    ``host``: where it goes; ``params_hash``: HMAC-SHA256 (hex) of the canonical parameters.
    Aggregate id: ``<folder>:<idempotency key>``."""

    context = "broker"
    aggregate = "extcall"

    group_folder: str
    idempotency_key: str
    provider: str
    product: str | None = None
    level: Level
    method: str
    host: str
    params_hash: str
    run_id: str | None = None
    started_at: UtcTimestamp


class ExtCallFinished(EventPayload):
    """The outcome of a started call. ``status``: the provider's HTTP status (0 when no answer came);
    ``outcome``: ``ok`` when the provider answered (whatever the status), ``failed`` when it could not be
    reached (``error`` names the failure); ``result_sealed``: the answer as base64 AES-GCM ciphertext (only the
    broker can open it; a repeat of the key returns it); ``duration_ms``: time spent calling out."""

    context = "broker"
    aggregate = "extcall"

    group_folder: str
    idempotency_key: str
    provider: str
    product: str | None = None
    level: Level
    params_hash: str
    status: int = Field(ge=0)
    outcome: Outcome
    duration_ms: int = Field(ge=0)
    result_sealed: str | None = None
    error: str | None = None
    finished_at: UtcTimestamp


class ExtCallRefused(EventPayload):
    """The broker refused a call without calling out. ``decision``: ``denied`` (a deny applies),
    ``insufficient`` (no grant at ``level_required``), ``expired`` (a grant would have allowed it but has
    expired), ``not_allowed`` (the provider's allowlist has no level for this host and method),
    ``key_reused`` (the idempotency key belongs to a call with other parameters). ``level_held``: the group's
    effective level at that moment. Aggregate id: the group folder."""

    context = "broker"
    aggregate = "extrefusal"

    group_folder: str
    idempotency_key: str
    provider: str
    product: str | None = None
    level_required: int = Field(ge=0, le=3)
    level_held: int = Field(ge=0, le=3)
    decision: Decision
    params_hash: str
    reason: str
    refused_at: UtcTimestamp
