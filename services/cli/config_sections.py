"""Every service section of config.yml validated up front, so a wrong key or type stops a command before it
starts anything (issue 16: `up` used to print "up" and then fail inside a service with a traceback whose key
path lacked the section).

``Settings`` (services/harness/config.py) keeps the service sections as plain mappings, because the harness may
not import services (tests/test_architecture.py); this module, on the CLI side of the composition root, knows
each section's model.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from services.broker.config import BrokerConfig
from services.gateway.config import GatewayConfig
from services.gateway.http_channel import exposure_problem
from services.governance.config import GovernanceConfig
from services.harness.config import Credentials, Settings, explain
from services.queue.config import QueueConfig
from services.router.config import RouterConfig
from services.runner.config import RunnerConfig
from services.scheduler.config import SchedulerConfig

SECTIONS: dict[str, type[BaseModel]] = {
    "channels": GatewayConfig, "router": RouterConfig, "queue": QueueConfig, "runner": RunnerConfig,
    "broker": BrokerConfig, "scheduler": SchedulerConfig, "governance": GovernanceConfig,
}
"""config.yml section → the model of the service that reads it."""


def section_problems(settings: Settings, credentials: Credentials, where: str) -> list[str]:
    """One line per problem, ``<where>: <section.dotted.key>: <what is wrong> (got …)``; empty when all is well.

    Also the checks a service would otherwise make only when it starts: an exposed webhook needs a token."""
    problems: list[str] = []
    for section, model in SECTIONS.items():
        try:
            parsed = model.model_validate(getattr(settings, section))
        except ValidationError as exc:
            problems += explain(exc, where=where, prefix=section)
            continue
        if isinstance(parsed, GatewayConfig) and parsed.http.enabled:
            token = credentials.webhook_token.get_secret_value() if credentials.webhook_token else None
            problem = exposure_problem(parsed.http, token)
            if problem:
                problems.append(f"{where}: {problem}")
    return problems
