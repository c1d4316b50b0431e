"""The scheduler service: scheduled tasks as aggregates, fired into the group queue (issue: scheduler)."""
