"""The operator's consumer of ``RunAbandoned``: the queue gave up on a group's messages after its retries
(events/catalogue/queue.py), so nobody will answer them until the next message. Logged at error level with the
group, chat, attempts and reason (the row is also in the ``run_failures`` read model: ``nanoclaw failures``)."""

from __future__ import annotations

from services.harness.logging import get_logger
from services.harness.service import Delivery, Emit


async def on_run_abandoned(delivery: Delivery, _deps: object) -> list[Emit]:
    p = delivery.payload
    log = get_logger("nanoclaw.projections", service="projections")  # per call: structlog test capture sees it
    log.error("agent run abandoned: the group's messages get no answer until the next message; see `nanoclaw failures`",
              group_folder=p.group_folder, chat_jid=p.chat_jid, run_id=p.run_id, attempts=p.attempts, reason=p.reason,
              seq=delivery.stream_seq)
    return []
