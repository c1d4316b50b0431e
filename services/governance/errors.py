"""Why a governance command is refused. Every message names the task, the state or the rule involved, so the
agent or person reading it knows what to do next."""

from __future__ import annotations


class GovernanceError(ValueError):
    """A command is invalid (bad input, or not allowed in the current state)."""


class NotFound(GovernanceError):
    """The task or product does not exist."""


class VersionConflict(GovernanceError):
    """The command's expected version is stale: the aggregate changed meanwhile (optimistic locking)."""


class NotAuthorized(GovernanceError):
    """The requester's roles do not allow the command."""


class SeparationOfPowers(NotAuthorized):
    """An executor of a task tried to approve it."""


class DuplicateApproval(GovernanceError):
    """The gate of this task is already approved."""


class MissingReviewSummary(GovernanceError):
    """Strict mode: ``DOING → REVIEW`` needs a review summary."""


class DuplicateDispatch(GovernanceError):
    """A dispatch with this key is already recorded on the task."""
