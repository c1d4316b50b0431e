"""The fault campaign of issue 13: `python -m tests.chaos.campaign` (docs/reliability.md)."""
