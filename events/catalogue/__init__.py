"""The event catalogue: every event type, one pydantic model each. Importing this package registers them all.

docs/events.md lists the same catalogue; tests/events/test_catalogue_docs.py keeps the two in sync.
"""

from events.catalogue import agent, broker, chat, ext, governance, queue, router, scheduler, system  # noqa: F401  (registration)
from events.catalogue.base import EventPayload, all_event_types, payload_class

__all__ = ["EventPayload", "all_event_types", "payload_class"]
