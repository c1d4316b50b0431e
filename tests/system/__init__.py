"""The system under test as separate processes: services, nats-server, a protocol-speaking agent and the stub
model, plus the traffic, ledger and checker shared by the lifecycle property test and the chaos campaign."""
