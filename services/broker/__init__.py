"""The external-access broker: the only service that holds upstream credentials. So far: the model proxy
(per-run tokens in, the real Anthropic credential out, usage and budgets recorded as events)."""
