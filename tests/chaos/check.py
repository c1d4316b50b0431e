"""The checker: joins the ledger of accepted messages with the log and the stub model's requests.

Columns (each a count of accepted messages, except ``duplicate_replies``, a count of messages answered twice):

- ``lost``: ended with neither a reply naming it nor a failure notice in its chat after it was accepted;
- ``duplicated_to_model``: shown to the model in more than one request;
- ``duplicate_replies``: named by more than one reply that went out (``MessageSent``);
- ``reordered``: reached the model before a message of its chat accepted earlier;
- ``stuck``: answered (reply or notice), but later than ``stuck_after_s`` plus its chat's agent time after it
  was accepted.

A reply is an outbound text of the stub model's form (``re <ids>``, tests/system/model.py) that was sent; any
other outbound text in the chat is a failure notice. ``never_to_model`` and ``abandoned_runs`` are reported
for diagnosis, not judged.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from events.store.jetstream import JetStreamEventStore
from tests.system.model import ids_in
from tests.system.traffic import Ledger

COLUMNS = ("lost", "duplicated_to_model", "duplicate_replies", "reordered", "stuck")


@dataclass
class Outbound:
    chat: str
    text: str
    sent_at: float | None = None  # wall-clock seconds of MessageSent; None: never sent


@dataclass
class LogView:
    """What the checker needs from the log."""

    outbound: dict[str, Outbound] = field(default_factory=dict)  # request id → outbound
    abandoned: Counter = field(default_factory=Counter)  # chat → RunAbandoned count
    dead_lettered: int = 0
    events: int = 0


async def read_log(store: JetStreamEventStore, timeline: Path | None = None) -> LogView:
    """The log's outbound messages, receipts, abandoned runs and dead letters; with ``timeline``, every event
    also written there as one JSON line (time, type, aggregate, data) for diagnosing a non-zero column."""
    view = LogView()
    dump = open(timeline, "w") if timeline else None
    try:
        async for commit in store.read():
            for e in commit.events:
                _take(view, e)
                if dump:
                    dump.write(json.dumps({"t": e.time.isoformat(), "type": e.eventtype, "agg": e.aggregateid,
                                           "data": e.data}, default=str) + "\n")
    finally:
        if dump:
            dump.close()
    return view


def _take(view: LogView, e) -> None:
    view.events += 1
    if e.eventtype == "OutboundMessageRequested":
        view.outbound[e.aggregateid] = Outbound(e.data["chat_jid"].removeprefix("http:"), e.data["text"])
    elif e.eventtype == "MessageSent" and e.aggregateid in view.outbound:
        view.outbound[e.aggregateid].sent_at = e.time.timestamp()
    elif e.eventtype == "RunAbandoned":
        view.abandoned[e.data["chat_jid"].removeprefix("http:")] += 1
    elif e.eventtype == "MessageDeadLettered":
        view.dead_lettered += 1


@dataclass
class Report:
    accepted: int
    lost: int
    duplicated_to_model: int
    duplicate_replies: int
    reordered: int
    stuck: int
    never_to_model: int
    notices: int
    abandoned_runs: int
    dead_lettered: int
    examples: dict[str, list[str]]

    @property
    def clean(self) -> bool:
        return all(getattr(self, c) == 0 for c in COLUMNS)

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        head = ("accepted",) + COLUMNS
        return ("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n| "
                + " | ".join(str(getattr(self, c)) for c in head) + " |")


def check(ledger: Ledger, model_requests: list[list[str]], log: LogView, *, agent_time_s: dict[str, float],
          stuck_after_s: float = 10.0, faults: list[tuple[float, float]] = (), recovery_s: float = 0.0,
          examples: int = 5) -> Report:
    """``faults``: wall-clock ``(killed, started again)`` windows; a message whose wait overlaps one may take
    the longest such window plus ``recovery_s`` longer (one recovery, not one per fault: a sum would hide a
    wait on an idle timeout behind a few kills) (a message a killed service had fetched comes back only after the
    consumer's ack wait), so a crash's own recovery is not counted as stuck.
    ``model_requests``: the ids of each stub model request, in arrival order. ``agent_time_s``: per chat,
    the longest time its agent may legitimately take before answering (start latency plus model time)."""
    shown = Counter(t for ids in model_requests for t in set(ids))
    dup_in_one = Counter(t for ids in model_requests for t, n in Counter(ids).items() if n > 1)
    first_at: dict[str, int] = {}
    for i, ids in enumerate(model_requests):
        for t in ids:
            first_at.setdefault(t, i)
    replied: Counter = Counter()
    answered_at: dict[str, float] = {}
    notices: dict[str, list[float]] = {}
    for out in log.outbound.values():
        if out.sent_at is None:
            continue
        if out.text.startswith("re "):
            for t in set(ids_in(out.text)):
                replied[t] += 1
                answered_at[t] = min(answered_at.get(t, out.sent_at), out.sent_at)
        else:
            notices.setdefault(out.chat, []).append(out.sent_at)
    cols: dict[str, list[str]] = {c: [] for c in (*COLUMNS, "never_to_model")}
    for chat, msgs in ledger.by_chat().items():
        latest_first = -1
        for a in msgs:
            t = a.token
            if shown[t] > 1 or dup_in_one[t]:
                cols["duplicated_to_model"].append(t)
            if replied[t] > 1:
                cols["duplicate_replies"].append(t)
            if t in first_at:
                if first_at[t] < latest_first:
                    cols["reordered"].append(t)
                latest_first = max(latest_first, first_at[t])
            else:
                cols["never_to_model"].append(t)
            notice = min((n for n in notices.get(chat, []) if n >= a.at), default=None)
            done = min((x for x in (answered_at.get(t), notice) if x is not None), default=None)
            if done is None:
                cols["lost"].append(t)
            elif done - a.at > stuck_after_s + agent_time_s.get(chat, 0.0) + max(
                    (end - start + recovery_s for start, end in faults if start <= done and end + recovery_s >= a.at),
                    default=0.0):
                cols["stuck"].append(f"{t} ({done - a.at:.1f}s)")
    return Report(accepted=len(ledger.accepted), **{c: len(v) for c, v in cols.items()},
                  notices=sum(len(v) for v in notices.values()), abandoned_runs=sum(log.abandoned.values()),
                  dead_lettered=log.dead_lettered, examples={c: v[:examples] for c, v in cols.items() if v})
