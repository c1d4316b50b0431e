"""Which chats are registered groups, as the gateway sees them: a private read model of the registrations.

The webhook answers ``404`` for a chat nobody registered (issue 16: such messages used to be stored and then
ignored by the router). The gateway shares no database with the router (services/router), so it keeps its own
copy of the ``registered_groups`` projection (projections/chat.py), rebuilt from the log in
``<data_dir>/gateway/readmodel.db``.

A chat registered a moment ago may not have reached this read model yet, so an unknown chat is looked up once
more after the read model has caught up with the end of the log (at most ``catch_up_s`` seconds).
"""

from __future__ import annotations

from pathlib import Path

import nats.errors

from events.errors import EventStoreError
from events.store.port import EventStore
from projections.chat import RegisteredGroups, group_by_jid
from projections.readmodel import LocalReadModel, ReadModelTimeout


class RegistrationUnknown(Exception):
    """Whether the chat is registered cannot be told now (the bus is unreachable or the read model is behind)."""


class Registrations:
    """Args:
        path: the read model's SQLite file.
        store: the event store it follows (and asks for the end of the log).
        catch_up_s: longest wait for the read model to reach the end of the log before an answer of "unknown".
    """

    def __init__(self, path: Path, store: EventStore, catch_up_s: float = 3.0):
        self.readmodel = LocalReadModel(path, [RegisteredGroups()], store)
        self.store, self.catch_up_s = store, catch_up_s

    def known(self, jid: str) -> bool:
        """Registered as far as the read model has read (no I/O beyond SQLite)."""
        return group_by_jid(self.readmodel, jid) is not None

    async def is_registered(self, jid: str) -> bool:
        """Whether ``jid`` is a registered group now, including registrations made just before this call.

        Raises:
            RegistrationUnknown: not known so far, and the log's end could not be reached or read in time.
        """
        if self.known(jid):
            return True
        try:
            await self.readmodel.wait_for(await self.store.last_seq(), timeout=self.catch_up_s)
        except (EventStoreError, ReadModelTimeout, nats.errors.Error, OSError, TimeoutError) as exc:
            raise RegistrationUnknown(str(exc)) from exc
        return self.known(jid)
