"""Stream definitions, created idempotently at start-up.

The event stream is the audit log: file storage, ``deny_delete`` and ``deny_purge``, no rollup headers, no age
or size limit, direct gets on (aggregate loads). See docs/events.md for the reasons and the duplicate window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from events.subjects import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM, EVENT_PREFIX, EVENT_STREAM

log = logging.getLogger(__name__)

DEFAULT_DUPLICATE_WINDOW_S = 600.0
"""``Nats-Msg-Id`` de-duplication window (s). Longer than the longest retry span of any publisher
(the group-queue backoff tops out at 80 s, outbound retries at 5 min)."""


@dataclass(frozen=True)
class StreamSettings:
    replicas: int = 1
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S


def _audit_stream(name: str, description: str, subject: str, settings: StreamSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=name,
        description=description,
        subjects=[subject],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=0,
        max_msgs=-1,
        max_bytes=-1,
        discard=api.DiscardPolicy.OLD,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        allow_direct=True,
    )


def event_stream_config(settings: StreamSettings) -> api.StreamConfig:
    return _audit_stream(EVENT_STREAM, "NanoClaw Bus domain events (the audit log)", f"{EVENT_PREFIX}.>", settings)


def dead_letter_stream_config(settings: StreamSettings) -> api.StreamConfig:
    return _audit_stream(DEAD_LETTER_STREAM, "Messages a service could not handle, kept with the error",
                         f"{DEAD_LETTER_PREFIX}.>", settings)


async def ensure_streams(js: JetStreamContext, settings: StreamSettings = StreamSettings()) -> None:
    """Create the event and dead-letter streams if missing. An existing stream is left as it is, but a
    stream that lost its audit guarantees (delete/purge allowed) is reported loudly."""
    for config in (event_stream_config(settings), dead_letter_stream_config(settings)):
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", config.name)
            continue
        if not (info.config.deny_delete and info.config.deny_purge):
            log.error("stream %s allows delete or purge: the audit log is not immutable", config.name)
