"""Runner service: runs agent sandboxes (see docs/agent-runs.md)."""
