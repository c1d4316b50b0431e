"""The ``governance:`` section of config.yml.

Example::

    governance:
      strict_mode: true              # DOING → REVIEW needs a review summary
      roles:                         # group folder → roles (the registered main group also holds ``main``)
        whatsapp_main: [main]
        dev-team: [developer]
        sec-team: [security]
      gates:                         # gate → who approves it, and which group gets the approval run
        security: {role: security, group: sec-team}
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from events.catalogue.governance import GATE_PATTERN

ROLE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
NO_GATE = "none"
"""The gate name meaning "no approval needed" (a task created with it has no gates)."""


class GateConfig(BaseModel):
    """``role``: the role whose holders approve the gate; ``group``: the folder that gets the approval run
    (default: the first folder, by name, holding ``role`` that did not execute the task)."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern=ROLE_PATTERN)
    group: str | None = None


def _default_gates() -> dict[str, GateConfig]:
    return {"security": GateConfig(role="security"), "revops": GateConfig(role="revops"),
            "claims": GateConfig(role="claims"), "product": GateConfig(role="main")}


class GovernanceConfig(BaseModel):
    """``roles``: group folder → roles; ``gates``: gate → approver; ``strict_mode``: ``DOING → REVIEW`` needs a
    review summary; ``auto_dispatch``: the dispatch loop runs (false: tasks move only by command).

    Raises (on validation): pydantic.ValidationError naming the bad key (an unknown key, a role or gate name
    outside ``[a-z][a-z0-9_-]*``, or a gate called ``none``)."""

    model_config = ConfigDict(extra="forbid")

    roles: dict[str, list[str]] = Field(default_factory=dict)
    gates: dict[str, GateConfig] = Field(default_factory=_default_gates)
    strict_mode: bool = False
    auto_dispatch: bool = True

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for folder, names in v.items():
            for name in names:
                if not re.fullmatch(ROLE_PATTERN, name):
                    raise ValueError(f"role {name!r} of folder {folder!r} must match {ROLE_PATTERN}")
        return v

    @field_validator("gates")
    @classmethod
    def _gates(cls, v: dict[str, GateConfig]) -> dict[str, GateConfig]:
        for gate in v:
            if gate == NO_GATE:
                raise ValueError(f"{NO_GATE!r} is reserved (it means: no gate)")
            if not re.fullmatch(GATE_PATTERN, gate):
                raise ValueError(f"gate {gate!r} must match {GATE_PATTERN}")
        return v

    def approver_role(self, gate: str) -> str:
        """Raises: KeyError for a gate that is not configured."""
        return self.gates[gate].role
