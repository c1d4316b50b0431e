"""A small history of catalogue events that changes read models in several ways (rows added, updated, removed),
appended in phases so tests can look at the system between them."""

from __future__ import annotations

from events.catalogue.chat import ChatNameSynced, MessageReceived, MessageSent
from events.catalogue.router import GroupRegistered, GroupRemoved, GroupUpdated
from events.envelope import AggregateRef, new_commit
from events.store.port import EventStore

T = "2026-03-01T10:00:00.000Z"


class History:
    """Appends through a real store, keeping each aggregate's head for the next commit."""

    def __init__(self, store: EventStore):
        self.store = store
        self.heads: dict[AggregateRef, tuple[int, int]] = {}

    async def save(self, ref: AggregateRef, *payloads) -> int:
        seq, version = self.heads.get(ref, (0, 0))
        result = await self.store.append(new_commit(ref, list(payloads), version=version, source="test"),
                                          expected_seq=seq)
        self.heads[ref] = (result.seq, version + len(payloads))
        return result.seq

    async def group(self, jid: str, name: str) -> int:
        return await self.save(AggregateRef("router", "group", jid),
                               GroupRegistered(jid=jid, name=name, folder=jid.split(":")[1], trigger="@Andy",
                                               added_at=T))

    async def rename(self, jid: str, name: str) -> int:
        return await self.save(AggregateRef("router", "group", jid), GroupUpdated(jid=jid, name=name))

    async def remove(self, jid: str) -> int:
        return await self.save(AggregateRef("router", "group", jid), GroupRemoved(jid=jid))

    async def message(self, jid: str, mid: str, text: str) -> int:
        return await self.save(AggregateRef("chat", "message", f"{jid}/{mid}"),
                               MessageReceived(channel="terminal", chat_jid=jid, message_id=mid, sender="ann",
                                               sender_name="Ann", text=text, timestamp=T))

    async def sent(self, jid: str, request: str) -> int:
        return await self.save(AggregateRef("chat", "outbound", request),
                               MessageSent(channel="terminal", chat_jid=jid, channel_message_id=request, sent_at=T))

    async def chat_name(self, jid: str, name: str) -> int:
        return await self.save(AggregateRef("chat", "chat", jid),
                               ChatNameSynced(channel="terminal", chat_jid=jid, name=name, at=T))


async def phase(history: History, n: int) -> int:
    """Phase ``n`` (0, 1, 2, ...) of the scenario; returns the last stream sequence it wrote."""
    h = history
    if n == 0:
        await h.group("term:a", "Alpha")
        await h.chat_name("term:a", "Alpha chat")
        await h.message("term:a", "m1", "hello")
        return await h.sent("term:a", "r1")
    if n == 1:
        await h.rename("term:a", "Alpha renamed")
        await h.group("term:b", "Beta")
        await h.message("term:b", "m2", "second\nline")
        return await h.chat_name("term:a", "Alpha chat 2")
    if n == 2:
        await h.remove("term:a")
        await h.message("term:a", "m3", "after removal")
        return await h.sent("term:b", "r2")
    await h.group(f"term:x{n}", f"X{n}")
    return await h.message(f"term:x{n}", f"m{n}", f"phase {n}")
