"""Base class and registry of event payloads.

Every event type is a pydantic model named in the past tense (``MessageReceived``). The class name is the
event type; ``context`` and ``aggregate`` place it in the subject scheme; ``schema_version`` is carried in
the envelope so old events can be upcast when a payload changes (:meth:`EventPayload.upcast`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from events.errors import InvalidEvent, UnknownEventType
from events.subjects import check_name

_REGISTRY: dict[str, type["EventPayload"]] = {}


class EventPayload(BaseModel):
    """A versioned event payload. Subclasses set ``context`` and ``aggregate``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    context: ClassVar[str]
    aggregate: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("_"):
            return
        check_name("event type", cls.__name__)
        check_name("context", cls.context)
        check_name("aggregate type", cls.aggregate)
        other = _REGISTRY.get(cls.__name__)
        if other is not None and other.__module__ != cls.__module__:
            raise TypeError(f"event type {cls.__name__} is defined twice ({other.__module__}, {cls.__module__})")
        _REGISTRY[cls.__name__] = cls

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__

    @classmethod
    def cloudevents_type(cls) -> str:
        """The CloudEvents ``type`` attribute, e.g. ``nanoclaw.chat.MessageReceived``."""
        return f"nanoclaw.{cls.context}.{cls.__name__}"

    @classmethod
    def upcast(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Turn the data of an older schema version into the current shape.

        The default accepts only the current version. Override when ``schema_version`` is bumped.

        Raises:
            InvalidEvent: the version is unknown.
        """
        if from_version != cls.schema_version:
            raise InvalidEvent(f"{cls.__name__} has no upcaster from schema version {from_version} to {cls.schema_version}")
        return data


def payload_class(event_type: str) -> type[EventPayload]:
    """Look up a payload class by event type.

    Raises:
        UnknownEventType: the catalogue has no such event.
    """
    try:
        return _REGISTRY[event_type]
    except KeyError:
        raise UnknownEventType(f"event type {event_type!r} is not in the catalogue") from None


def all_event_types() -> dict[str, type[EventPayload]]:
    """Every registered event type (import ``events.catalogue`` first to register them all)."""
    return dict(sorted(_REGISTRY.items()))
