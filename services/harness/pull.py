"""Pull requests on a service's durable consumer: one request at a time, each with a reply subject of its own.

Why not nats-py's ``PullSubscription.fetch`` (what the runner used until this replaced it)? All its requests
share one reply subject, and it takes any status that arrives there as the answer to the request in flight.
With ``fetch(64, timeout=1.0)`` in a loop, an idle consumer's request ends every second with the server's
``408 Request Timeout``; the server counts the expiry from when it *receives* the request, so that notice often
arrives just after the client's own timer fired, i.e. during the *next* fetch. That fetch reads it as "no
messages" for its own request and sends a second, lingering one (batch 64, no ``no_wait``) while the first is
still open. The next message goes to the first request and is returned at once; a later one goes to the
lingering request, which does not end until its batch is full or it expires, and the fetch that received the
message waits for that: up to 1 s. Measured with bench/agent_bench.py (process backend, 20 new runs and 50
follow-ups): 8 of 20 new-run turns and 1 of 50 follow-ups had a hop over 100 ms (up to 0.92 s); in an instrumented run
22 of 27 late fetches returned exactly 1.00 s after an earlier fetch had begun (its orphaned request expiring);
none after this change. On a bare nats-server the same loop delivered 21 of 180 messages 93–960 ms late;
this class, none.

Here every request is ``{"batch": n, "expires": wait, "no_wait": true}``: the server holds it until at least
one message is available, then sends what is available (up to ``n``) and ends it with ``404 No Messages``, or
ends it with ``408 Request Timeout`` at ``expires``. The next request is sent only once the previous one has
ended, and a status whose subject is not the current request's reply subject is an earlier request's late
notice and is ignored. So a message is handed over as soon as the server delivers it.
"""

from __future__ import annotations

import asyncio
import json

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import APIError

GRACE_S = 1.0
"""How long past a request's expiry the client waits for the server's notice (lost only with the connection)."""
_ENDED = ("404", "408")  # no messages (after some were sent) / expired
_HEARTBEAT = "100"


class PullConsumer:
    """Args:
        nc: a connected nats-py client.
        stream: the stream of the durable consumer.
        consumer: the durable pull consumer's name.
    """

    def __init__(self, nc: Client, stream: str, consumer: str):
        self._nc = nc
        self._next = f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub = None
        self._inbox = ""
        self._requests = 0

    @property
    def started(self) -> bool:
        return self._sub is not None

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()

        async def on_msg(msg: Msg) -> None:
            self._queue.put_nowait(msg)

        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=on_msg)

    async def fetch(self, batch: int, wait: float) -> list[Msg]:
        """Up to ``batch`` messages: as soon as the server has any, or none after ``wait`` s.

        Raises:
            nats.js.errors.APIError: the server refused the request (409 consumer deleted, 503 no JetStream…).
        """
        msgs = self._take_queued(batch)
        if msgs:
            return msgs  # delivered for an earlier request that the client gave up on (connection trouble)
        self._requests += 1
        reply = f"{self._inbox}.{self._requests}"
        request = {"batch": batch, "expires": int(wait * 1_000_000_000), "no_wait": True}
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await self._nc.publish(self._next, json.dumps(request).encode(), reply=reply)
        try:
            async with asyncio.timeout(wait + GRACE_S):
                while len(msgs) < batch:  # a full batch ends the request on the server without a status
                    msg = await self._queue.get()
                    status = _status(msg)
                    if status is None:
                        msgs.append(msg)
                    elif msg.subject != reply or status == _HEARTBEAT:
                        continue  # an earlier request's late notice: not about this one
                    elif status in _ENDED or msgs:
                        if not msgs and loop.time() - sent < wait / 2:
                            # Refused at once (e.g. "408 Requests Pending" while an older request is open): do
                            # not let the caller's loop turn into a busy one.
                            await asyncio.sleep(min(0.05, wait))
                        return msgs
                    else:
                        APIError.from_msg(msg)  # raises: 409 consumer deleted, 503 no JetStream, …
        except TimeoutError:
            pass  # no notice within the grace: the next request starts afresh
        return msgs

    def _take_queued(self, batch: int) -> list[Msg]:
        msgs: list[Msg] = []
        while len(msgs) < batch and not self._queue.empty():
            msg = self._queue.get_nowait()
            if _status(msg) is None:
                msgs.append(msg)
        return msgs

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None and not self._nc.is_closed:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - closing: the connection may be going away
                pass


def _status(msg: Msg) -> str | None:
    """The status code of a server notice (404, 408, 409, 100…); None for a stream message."""
    return (msg.headers or {}).get(api.Header.STATUS) if not msg.reply else None
