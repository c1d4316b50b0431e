"""Webhook traffic and the ledger of accepted messages.

A plan is, per chat, a list of ``(gap_s, count)`` bursts: wait ``gap_s`` then post ``count`` messages back to
back. Each chat's posts are sequential (the next after the previous one's answer), so the ledger's order per
chat is the arrival order the system must keep; chats run concurrently. Every attempt gets a fresh id
(``g<chat>-<n>``): a post that got no 202 (the gateway down, a reset) is not in the ledger and is tried again
under a new id, so an id the gateway did store without answering never looks like a duplicate.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

Burst = tuple[float, int]


def chat_name(index: int) -> str:
    return f"g{index:02d}"


@dataclass
class Accepted:
    token: str
    chat: str
    index: int  # position among the chat's accepted messages
    at: float  # wall-clock seconds when the 202 came back


@dataclass
class Ledger:
    accepted: list[Accepted] = field(default_factory=list)
    refused: int = 0  # attempts with no 202 (retried under a new id)

    def by_chat(self) -> dict[str, list[Accepted]]:
        out: dict[str, list[Accepted]] = {}
        for a in self.accepted:
            out.setdefault(a.chat, []).append(a)
        return out


async def send_chat(session: aiohttp.ClientSession, port: int, chat: str, bursts: list[Burst], ledger: Ledger,
                    give_up_s: float) -> None:
    """Post ``chat``'s bursts; stop early only when the gateway has refused every attempt for ``give_up_s``."""
    n = 0
    index = 0
    refused_since: float | None = None
    for gap, count in bursts:
        await asyncio.sleep(gap)
        sent = 0
        while sent < count:
            token = f"{chat}-{n:05d}"
            n += 1
            try:
                async with session.post(f"http://127.0.0.1:{port}/v1/messages",
                                        json={"chat": chat, "sender": "ann", "text": f"hello {token}"}) as r:
                    ok = r.status == 202
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            if ok:
                ledger.accepted.append(Accepted(token, chat, index, time.time()))
                index += 1
                sent += 1
                refused_since = None
            else:
                ledger.refused += 1
                refused_since = refused_since or time.monotonic()
                if time.monotonic() - refused_since > give_up_s:
                    return
                await asyncio.sleep(0.2)


async def send(port: int, plan: dict[str, list[Burst]], ledger: Ledger, *, give_up_s: float = 120) -> None:
    """Post the whole plan (chats concurrently); returns when every chat is done (or its posts have been refused
    for ``give_up_s`` in a row: the ledger then holds fewer messages than the plan, which callers check)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(send_chat(session, port, chat, bursts, ledger, give_up_s)
                               for chat, bursts in plan.items()))
