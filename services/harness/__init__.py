"""The service harness shared by every service: NATS adapter, consumers, dead letters, metrics, logging,
configuration and the embedded nats-server."""
