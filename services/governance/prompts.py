"""The prompts of dispatched runs: everything the agent needs is in the prompt (runs are ``isolated``), including
the tools to report back with and the version to expect."""

from __future__ import annotations

from services.governance.task import GovTask


def _header(task: GovTask) -> str:
    lines = [f"Governance task {task.id}: {task.title}"]
    if task.product_id:
        lines.append(f"Product: {task.product_id}")
    if task.description:
        lines.append(f"Description:\n{task.description}")
    lines.append(f"Gates: {', '.join(task.gates) or 'none'}")
    return "\n".join(lines)


def execution_prompt(task: GovTask, expected_version: int) -> str:
    """For the assignee. ``expected_version``: the task's version once the dispatch commit is stored."""
    return (f"{_header(task)}\n\nYou are assigned to execute this task; it is now DOING. Do the work. When it is "
            f"done, call gov_transition with task_id {task.id!r}, to 'REVIEW', expected_version "
            f"{expected_version}, a review_summary of what you did and how you checked it, and evidence (links, "
            "paths, command output). If you cannot go on, move it to 'BLOCKED' with the reason. Use gov_get to "
            "re-read the task and its current version.")


def approval_prompt(task: GovTask, gate: str) -> str:
    """For a gate's approver group, written after the move to APPROVAL."""
    summary = f"\nReview summary: {task.review_summary}" if task.review_summary else ""
    return (f"{_header(task)}{summary}\n\nThe task is waiting for your approval of gate {gate!r}. Check the work "
            f"(gov_get {task.id!r} shows its history and evidence). To approve, call gov_approve with task_id "
            f"{task.id!r}, gate {gate!r}, the task's current expected_version (from gov_get), a reason and evidence. "
            "To send it back, call gov_transition to 'DOING' with the reason.")
