"""The agent that runs inside the sandbox: ``python -m sandbox.agent`` (docs/agent-runs.md, "Container protocol").

It reads one ``ContainerInput`` JSON object from stdin, runs Claude through claude-agent-sdk with an in-process
MCP server ``nc`` whose tools are NATS requests, takes follow-ups and close over NATS, and writes output
markers to stdout. Self-contained on purpose: it imports only the stdlib, ``claude_agent_sdk`` and ``nats``,
because it is copied alone into the agent image.

Modules: ``protocol`` (stdin parsing, output markers), ``tools`` (the ``nc`` MCP server), ``script`` (task
pre-check), ``runner`` (the main loop).
"""
