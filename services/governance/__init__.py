"""Governance service: products, roles, the governance-task state machine with approval gates, and the dispatch
loop that hands tasks to agent groups (docs/governance.md)."""
