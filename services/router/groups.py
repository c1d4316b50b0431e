"""The registered-group aggregate: which chats the assistant serves, with what folder and trigger.

Rules (as NanoClaw v1 registerGroup / group-folder.ts): the folder is validated and must be unique among
registered groups (uniqueness is checked by the caller against the registered-groups read model); ``global``
is reserved; the trigger defaults to ``@<assistant name>``.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import event

from events.aggregate import NcAggregate
from events.catalogue.chat import http_chat_problem
from services.router.folders import validate_folder


class GroupError(ValueError):
    """A group command is invalid in the group's current state (the message says why)."""


class RegisteredGroup(NcAggregate):
    CONTEXT, TYPE = "router", "group"

    @staticmethod
    def create_id(jid: str, **_: Any) -> str:
        return jid

    @classmethod
    def register(cls, *, jid: str, name: str, folder: str, trigger: str, requires_trigger: bool, is_main: bool,
                 channel: str, container_config: dict | None, added_at: str) -> "RegisteredGroup":
        """Raises: InvalidFolder (a ValueError) naming the problem with the folder; GroupError for an empty name."""
        _check(jid, name, folder, trigger)
        return cls(jid=jid, name=name, folder=folder, trigger=trigger, requires_trigger=requires_trigger,
                   is_main=is_main, channel=channel, container_config=container_config, added_at=added_at)

    @event("GroupRegistered")
    def __init__(self, jid: str, name: str, folder: str, trigger: str, requires_trigger: bool, is_main: bool,
                 channel: str, container_config: dict | None, added_at: str):
        self._set(jid, name, folder, trigger, requires_trigger, is_main, channel, container_config, added_at)

    def _set(self, jid, name, folder, trigger, requires_trigger, is_main, channel, container_config, added_at) -> None:
        self.jid, self.name, self.folder, self.trigger = jid, name, folder, trigger
        self.requires_trigger, self.is_main, self.channel = requires_trigger, is_main, channel
        self.container_config, self.added_at, self.removed = container_config, added_at, False

    def reinstate(self, **fields: Any) -> None:
        if not self.removed:
            raise GroupError(f"{self.jid} is already registered (folder {self.folder}); use `nanoclaw groups update`")
        _check(fields["jid"], fields["name"], fields["folder"], fields["trigger"])
        self._reinstated(**fields)

    @event("GroupReinstated")
    def _reinstated(self, jid: str, name: str, folder: str, trigger: str, requires_trigger: bool, is_main: bool,
                    channel: str, container_config: dict | None, added_at: str) -> None:
        self._set(jid, name, folder, trigger, requires_trigger, is_main, channel, container_config, added_at)

    def update(self, *, name: str | None = None, trigger: str | None = None, requires_trigger: bool | None = None,
               container_config: dict | None = None) -> None:
        if self.removed:
            raise GroupError(f"{self.jid} is not registered (it was removed)")
        if name is not None and not name.strip():
            raise GroupError("name must not be empty")
        if trigger is not None and not trigger.strip():
            raise GroupError("trigger must not be empty")
        if all(v is None for v in (name, trigger, requires_trigger, container_config)):
            raise GroupError("nothing to update: give at least one of name, trigger, requires_trigger, container_config")
        self._updated(jid=self.jid, name=name, trigger=trigger, requires_trigger=requires_trigger,
                      container_config=container_config)

    @event("GroupUpdated")
    def _updated(self, jid: str, name: str | None, trigger: str | None, requires_trigger: bool | None,
                 container_config: dict | None) -> None:
        self.name = name if name is not None else self.name
        self.trigger = trigger if trigger is not None else self.trigger
        self.requires_trigger = requires_trigger if requires_trigger is not None else self.requires_trigger
        self.container_config = container_config if container_config is not None else self.container_config

    def remove(self) -> None:
        if self.removed:
            raise GroupError(f"{self.jid} is not registered (it was removed)")
        self._removed(jid=self.jid)

    @event("GroupRemoved")
    def _removed(self, jid: str) -> None:
        self.removed = True


def _check(jid: str, name: str, folder: str, trigger: str) -> None:
    if not jid.strip():
        raise GroupError("jid must not be empty")
    if jid.startswith("http:") and (problem := http_chat_problem(jid.removeprefix("http:"))):
        # The webhook could never write to it (events/catalogue/chat.py: one rule for gateway and router).
        raise GroupError(f"jid {jid!r}: the chat after 'http:' {problem}")
    if not name.strip():
        raise GroupError("name must not be empty")
    if not trigger.strip():
        raise GroupError("trigger must not be empty")
    validate_folder(folder)
