"""Router service: the pure routing rules (this package's modules) and, later, their NATS wiring."""
