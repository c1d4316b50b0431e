"""Stopping asyncio tasks when a library may swallow the cancel.

On Python 3.11, ``asyncio.wait_for`` returns the awaited result instead of raising ``CancelledError`` when the
cancel lands in the same loop iteration as the result (CPython gh-86296, fixed in 3.12 by rebuilding wait_for
on ``asyncio.timeout``). nats-py awaits every request (a publish ack, a consumer create) with ``wait_for``, so a
task stopped at that instant carries on as if nothing happened: a following replay then follows forever, and a
stop that awaits it never returns. Seen in CI: several replays recreated their consumers at once, the service
stop landed on one of those requests, and the stop hung until the 300 s test timeout.

Our own loops use ``asyncio.timeout`` (which does not swallow); this is for the code we do not own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

RECANCEL_S = 1.0
"""How long (s) a cancelled task has to end before it is cancelled again."""
ATTEMPTS = 10
"""How many cancels a task gets before the stop gives up on it (logged as an error)."""


async def cancel_and_wait(tasks: Iterable[asyncio.Task], *, attempts: int = ATTEMPTS,
                          recancel_s: float = RECANCEL_S) -> set[asyncio.Task]:
    """Cancel ``tasks`` and wait for them to end, cancelling again every ``recancel_s`` s those still running.

    A task that ignored a cancel is named in a warning each time. Never raises what the tasks raised (their
    results are left on them); never hangs: after ``attempts`` cancels the tasks still running are returned,
    and logged as an error, so that a service stop completes.

    Returns:
        the tasks still running (empty when all ended).
    """
    pending = {t for t in tasks if not t.done()}
    for attempt in range(attempts):
        if not pending:
            break
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=recancel_s)
        for task in done:  # retrieved here, as gather(return_exceptions=True) did: no "never retrieved" noise
            if not task.cancelled():
                task.exception()
        if pending and attempt + 1 < attempts:
            log.warning("task(s) ignored a cancel (3.11 wait_for race); cancelling again: %s", _names(pending))
    if pending:
        log.error("task(s) still running after %d cancels; leaving them: %s", attempts, _names(pending))
    return pending


def _names(tasks: set[asyncio.Task]) -> str:
    return ", ".join(sorted(t.get_name() for t in tasks))
