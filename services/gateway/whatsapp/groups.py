"""Group-name sync: WhatsApp group subjects → ``ChatNameSynced`` payloads.

As NanoClaw v1 whatsapp.ts ``syncGroupMetadata`` (nanoclaw-behaviour §21.5, §24.3 "Group sync"): on the first
connect, then at most every 24 h unless forced; groups without a subject are skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from events.catalogue.chat import ChatNameSynced
from services.gateway.whatsapp.jid import is_group_jid
from services.gateway.whatsapp.port import WhatsAppPort

GROUP_SYNC_INTERVAL = timedelta(hours=24)


def group_sync_due(last_synced: datetime | None, now: datetime, *, force: bool = False,
                   interval: timedelta = GROUP_SYNC_INTERVAL) -> bool:
    """Whether to sync now: never synced, forced, or the last sync is ``interval`` (24 h) old or older.

    A ``last_synced`` in the future (clock stepped back) counts as due, so a wrong clock cannot stop syncing.
    Both times must be aware datetimes.
    """
    if force or last_synced is None or last_synced > now:
        return True
    return now - last_synced >= interval


async def sync_group_names(port: WhatsAppPort, now: datetime) -> list[ChatNameSynced]:
    """Fetch the joined groups and return one ``ChatNameSynced`` per group with a subject, ``at=now``.

    The names are stripped; groups with an empty subject and non-group JIDs are skipped; a JID listed twice
    yields one payload.

    Raises:
        Whatever ``port.joined_groups()`` raises. The caller logs it and keeps its previous ``last_synced``,
        so the next :func:`group_sync_due` check tries again (v1 logged the failure and carried on).
    """
    out: dict[str, ChatNameSynced] = {}
    for jid, name in await port.joined_groups():
        name = name.strip()
        if not name or not is_group_jid(jid):
            continue
        out[jid] = ChatNameSynced(channel="whatsapp", chat_jid=jid, name=name, is_group=True, at=now)
    return list(out.values())
