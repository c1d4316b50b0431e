"""The capability aggregate (``broker/capability/<folder>:<provider>``): what one group may do with one
provider, and the decision for a call.

Levels: 0 none (the default), 1 read-only, 2 write, 3 deploy/merge; a grant of level N allows calls needing
N or less. Rules:

- L2 and L3 grants expire ``GRANT_TTL`` (7 days) after they become active; expiry is checked at call time
  against the caller's clock, so nothing has to happen at the moment a grant runs out.
- L3 needs two distinct approvers (the two-man rule): the first one's grant is only *proposed*; it becomes
  active when a second, different person approves it (names compared ignoring case and surrounding spaces).
- A grant scoped to a product covers only calls for that product; an unscoped grant covers every call.
- A deny (for one product, or for everything) wins over every grant until it is lifted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.router import FOLDER_PATTERN
from events.catalogue.types import iso_utc
from services.broker.ext.config import PROVIDER_NAME
from services.harness.clock import parse_time

GRANT_TTL = timedelta(days=7)
LEVEL_NAMES = {0: "none", 1: "read-only", 2: "write", 3: "deploy/merge"}
_FOLDER = re.compile(FOLDER_PATTERN)
_PRODUCT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class CapabilityError(ValueError):
    """A capability command is invalid or does not fit the current state (the message says why)."""


@dataclass
class Grant:
    grant_id: str
    level: int
    product: str | None
    status: str  # "proposed" | "active" | "revoked"
    proposed_by: str | None
    approvers: tuple[str, ...]
    expires_at: datetime | None
    reason: str = ""

    def covers(self, product: str | None) -> bool:
        return self.product is None or self.product == product

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class Verdict:
    """``decision``: ``allowed``, ``denied``, ``insufficient`` or ``expired``; ``held``: the effective level
    (0 under a deny); ``reason``: one sentence for the agent and the audit trail."""

    decision: str
    held: int
    reason: str

    @property
    def allowed(self) -> bool:
        return self.decision == "allowed"


def check_names(group_folder: str, provider: str, product: str | None = None) -> None:
    """Raises: CapabilityError naming the malformed folder, provider or product."""
    if not isinstance(group_folder, str) or not _FOLDER.fullmatch(group_folder):
        raise CapabilityError(f"invalid group folder {group_folder!r}: 1–64 of A-Z a-z 0-9 _ -, starting with a "
                              "letter or digit")
    if not isinstance(provider, str) or not PROVIDER_NAME.match(provider):
        raise CapabilityError(f"invalid provider {provider!r}: [a-z][a-z0-9_-]* up to 32 characters")
    if product is not None and (not isinstance(product, str) or not _PRODUCT.fullmatch(product)):
        raise CapabilityError(f"invalid product {product!r}: 1–64 of A-Z a-z 0-9 . _ -, starting with a letter "
                              "or digit")


def _person(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise CapabilityError(f"{what} must name a person")
    return name.strip()


def _scope(product: str | None) -> str:
    return f"product {product}" if product else "every product"


class ExtCapability(NcAggregate):
    CONTEXT, TYPE = "broker", "capability"

    @staticmethod
    def create_id(group_folder: str, provider: str, **_: Any) -> str:
        return f"{group_folder}:{provider}"

    @classmethod
    def open(cls, group_folder: str, provider: str) -> "ExtCapability":
        """A new, empty capability record (level 0). Raises: CapabilityError for a malformed folder or provider."""
        check_names(group_folder, provider)
        return cls(group_folder=group_folder, provider=provider)

    @event("ExtCapabilityOpened")
    def __init__(self, group_folder: str, provider: str):
        self.group_folder, self.provider = group_folder, provider
        self.grants: dict[str, Grant] = {}
        self.denies: dict[str | None, str] = {}  # product (None: all) → reason

    # ---- commands ----------------------------------------------------------------------------------------
    def grant(self, *, grant_id: str, level: int, product: str | None, approvers: list[str], reason: str,
              now: datetime) -> Grant:
        """Grant ``level`` (1–3). L1/L2: one approver, active at once. L3: the first approver proposes; a
        second, distinct approver in the same call also approves (else use :meth:`approve` later).

        Raises: CapabilityError for a level outside 1–3, no approver, a repeated approver, more than two, a
        malformed product, or a grant id already used."""
        if level not in (1, 2, 3):
            raise CapabilityError(f"level must be 1 (read-only), 2 (write) or 3 (deploy/merge), not {level!r}")
        check_names(self.group_folder, self.provider, product)
        people = [_person(a, "an approver") for a in approvers]
        if not people:
            raise CapabilityError("a grant needs an approver")
        if len({p.casefold() for p in people}) != len(people):
            raise CapabilityError(f"approvers must be distinct people (got {', '.join(people)})")
        if len(people) > (2 if level == 3 else 1):
            raise CapabilityError(f"level {level} takes {'two approvers' if level == 3 else 'one approver'}, "
                                  f"not {len(people)}")
        if grant_id in self.grants:
            raise CapabilityError(f"grant id {grant_id} is already used")
        if level < 3:
            self._granted(group_folder=self.group_folder, provider=self.provider, grant_id=grant_id, level=level,
                          product=product, approvers=people, reason=reason, granted_at=iso_utc(now),
                          expires_at=iso_utc(now + GRANT_TTL) if level == 2 else None)
        else:
            self._proposed(group_folder=self.group_folder, provider=self.provider, grant_id=grant_id, level=level,
                           product=product, proposed_by=people[0], reason=reason, proposed_at=iso_utc(now))
            if len(people) == 2:
                self.approve(grant_id=grant_id, approver=people[1], now=now)
        return self.grants[grant_id]

    def approve(self, *, grant_id: str, approver: str, now: datetime) -> Grant:
        """The second approval of a proposed L3 grant: it becomes active for ``GRANT_TTL`` from ``now``.

        Raises: CapabilityError when there is no such proposal, or the approver is the proposer."""
        grant = self.grants.get(grant_id)
        if grant is None or grant.status != "proposed":
            state = "no such grant" if grant is None else f"it is {grant.status}"
            raise CapabilityError(f"grant {grant_id} of {self.id} is not waiting for approval ({state})")
        person = _person(approver, "the approver")
        if person.casefold() == (grant.proposed_by or "").casefold():
            raise CapabilityError(f"two-man rule: {person} proposed grant {grant_id}; a different person must "
                                  "approve it")
        self._granted(group_folder=self.group_folder, provider=self.provider, grant_id=grant_id, level=grant.level,
                      product=grant.product, approvers=[grant.proposed_by, person], reason=grant.reason,
                      granted_at=iso_utc(now), expires_at=iso_utc(now + GRANT_TTL))
        return self.grants[grant_id]

    def revoke(self, *, grant_id: str | None, by: str, reason: str, now: datetime) -> list[str]:
        """Revoke one grant, or (``grant_id`` None) every grant not yet revoked. Returns the revoked ids.

        Raises: CapabilityError when there is nothing to revoke."""
        person = _person(by, "the revoker")
        ids = [grant_id] if grant_id is not None else [g.grant_id for g in self.grants.values() if g.status != "revoked"]
        if not ids:
            raise CapabilityError(f"{self.id} has no grant to revoke")
        for gid in ids:
            grant = self.grants.get(gid)
            if grant is None or grant.status == "revoked":
                raise CapabilityError(f"grant {gid} of {self.id} is {'unknown' if grant is None else 'already revoked'}")
            self._revoked(group_folder=self.group_folder, provider=self.provider, grant_id=gid, revoked_by=person,
                          reason=reason, revoked_at=iso_utc(now))
        return ids

    def deny(self, *, product: str | None, by: str, reason: str, now: datetime) -> None:
        """Raises: CapabilityError when the same deny is already in force, or the product is malformed."""
        check_names(self.group_folder, self.provider, product)
        if product in self.denies:
            raise CapabilityError(f"{self.id} is already denied for {_scope(product)}")
        self._denied(group_folder=self.group_folder, provider=self.provider, product=product,
                     denied_by=_person(by, "the person denying"), reason=reason, denied_at=iso_utc(now))

    def lift_deny(self, *, product: str | None, by: str, reason: str, now: datetime) -> None:
        """Raises: CapabilityError when no such deny is in force."""
        if product not in self.denies:
            raise CapabilityError(f"{self.id} has no deny for {_scope(product)}")
        self._deny_lifted(group_folder=self.group_folder, provider=self.provider, product=product,
                          lifted_by=_person(by, "the person lifting the deny"), reason=reason, lifted_at=iso_utc(now))

    # ---- the decision for a call -------------------------------------------------------------------------
    def decide(self, required: int, product: str | None, now: datetime) -> Verdict:
        """May a call needing level ``required`` for ``product`` go out at ``now``?"""
        for scope in (None, product) if product is not None else (None,):
            if scope in self.denies:
                return Verdict("denied", 0, f"{self.provider} is denied for group {self.group_folder} "
                                            f"({_scope(scope)}: {self.denies[scope] or 'no reason given'})")
        covering = [g for g in self.grants.values() if g.covers(product)]
        live = [g.level for g in covering if g.status == "active" and not g.expired(now)]
        held = max(live, default=0)
        if held >= required:
            return Verdict("allowed", held, f"level {held} held")
        need = f"needs level {required} ({LEVEL_NAMES[required]}); group {self.group_folder} holds level {held}"
        if any(g.status == "active" and g.expired(now) and g.level >= required for g in covering):
            return Verdict("expired", held, f"{need}: the grant that covered it has expired (level 2 and 3 "
                                            "grants last 7 days)")
        if any(g.status == "proposed" and g.level >= required for g in covering):
            return Verdict("insufficient", held, f"{need}: a level 3 grant waits for its second approver")
        return Verdict("insufficient", held, f"{need} for {self.provider}"
                                             f"{' and product ' + product if product else ''}")

    # ---- events ------------------------------------------------------------------------------------------
    @event("ExtCapabilityProposed")
    def _proposed(self, group_folder: str, provider: str, grant_id: str, level: int, product: str | None,
                  proposed_by: str, reason: str, proposed_at: str) -> None:
        self.grants[grant_id] = Grant(grant_id, level, product, "proposed", proposed_by, (proposed_by,), None, reason)

    @event("ExtCapabilityGranted")
    def _granted(self, group_folder: str, provider: str, grant_id: str, level: int, product: str | None,
                 approvers: list[str], reason: str, granted_at: str, expires_at: str | None) -> None:
        proposer = self.grants[grant_id].proposed_by if grant_id in self.grants else approvers[0]
        self.grants[grant_id] = Grant(grant_id, level, product, "active", proposer, tuple(approvers),
                                      parse_time(expires_at) if expires_at else None, reason)

    @event("ExtCapabilityRevoked")
    def _revoked(self, group_folder: str, provider: str, grant_id: str, revoked_by: str, reason: str,
                 revoked_at: str) -> None:
        self.grants[grant_id].status = "revoked"

    @event("ExtCapabilityDenied")
    def _denied(self, group_folder: str, provider: str, product: str | None, denied_by: str, reason: str,
                denied_at: str) -> None:
        self.denies[product] = reason

    @event("ExtCapabilityDenyLifted")
    def _deny_lifted(self, group_folder: str, provider: str, product: str | None, lifted_by: str, reason: str,
                     lifted_at: str) -> None:
        self.denies.pop(product, None)


def decide(capability: ExtCapability | None, group_folder: str, provider: str, required: int, product: str | None,
           now: datetime) -> Verdict:
    """The decision for a group that may have no capability record at all (level 0: nothing is allowed)."""
    if capability is None:
        return Verdict("insufficient", 0, f"needs level {required} ({LEVEL_NAMES[required]}); group {group_folder} "
                                          f"was never granted access to {provider}")
    return capability.decide(required, product, now)
