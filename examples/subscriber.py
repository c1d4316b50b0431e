#!/usr/bin/env python3
"""Follow NanoClaw Bus's MessageReceived and MessageSent events as an outside tool: the read-only reader
identity, the nats-py client, and nothing else of NanoClaw Bus's code (the contract is docs/events.md and
docs/asyncapi.yaml).

Three ways to start (one per run):

    # a durable position: the server remembers what you acknowledged; run it again and it resumes there
    python examples/subscriber.py --durable my-tool
    # from a stream sequence: everything after sequence 120
    python examples/subscriber.py --since 120
    # from a time: everything the stream stored at or after it
    python examples/subscriber.py --at 2026-03-03T10:00:00Z

By default it connects to the URL and with the password `nanoclaw up` writes into ``data/reader/`` (see
``nanoclaw events credentials``); ``--server`` and ``--password-file`` say otherwise. It prints one JSON
object per event: ``{"seq", "type", "id", "chat_jid", "time", "data"}``; ``--limit N`` stops after N events.

Why a pull consumer: the reader may create consumers of its own on NC_EVENTS (not the services' ``svc_*``), and
a durable pull consumer keeps the position on the server, acknowledged after each event is handled (at least
once: key your side effects on the event ``id``). Why ``filter_subjects``: one consumer for both subjects keeps
the two types in stream order. Why parse the body: the subject names a commit's *first* event type; a commit may
hold several events (not these two types today, but the contract allows it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import nats
from nats.js import api

STREAM = "NC_EVENTS"
WANTED = ("MessageReceived", "MessageSent")
SUBJECTS = ["nc.evt.chat.message.*.MessageReceived", "nc.evt.chat.outbound.*.MessageSent"]


def consumer_config(args: argparse.Namespace) -> api.ConsumerConfig:
    """Where the consumer starts: after ``--since``, at ``--at``, or (durable, first run) at the beginning."""
    config = api.ConsumerConfig(filter_subjects=SUBJECTS, ack_policy=api.AckPolicy.EXPLICIT,
                                deliver_policy=api.DeliverPolicy.ALL)
    if args.since is not None:
        config.deliver_policy, config.opt_start_seq = api.DeliverPolicy.BY_START_SEQUENCE, args.since + 1
    elif args.at is not None:
        when = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        config.deliver_policy = api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if args.durable is None:
        config.inactive_threshold = 30.0  # an ephemeral consumer the server removes 30 s after we leave
    return config


async def follow(args: argparse.Namespace) -> int:
    password = Path(args.password_file).read_text().strip()
    nc = await nats.connect(args.server, user=args.user, password=password, max_reconnect_attempts=3)
    js = nc.jetstream()
    # With --durable, an existing consumer is reused as it is (the server kept its position); else created.
    sub = await js.pull_subscribe("", durable=args.durable, stream=STREAM, config=consumer_config(args))
    printed = 0
    try:
        while not args.limit or printed < args.limit:
            try:
                msgs = await sub.fetch(batch=min(100, args.limit - printed) if args.limit else 100, timeout=5)
            except nats.errors.TimeoutError:
                continue  # nothing new yet
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                try:
                    events = json.loads(msg.data)
                    assert isinstance(events, list)
                except (ValueError, AssertionError):
                    print(json.dumps({"seq": seq, "unreadable": msg.subject}), file=sys.stderr)
                    await msg.ack()  # one bad message never stops a reader (docs/events.md)
                    continue
                for event in events:
                    if isinstance(event, dict) and event.get("eventtype") in WANTED:
                        data = event.get("data", {})
                        print(json.dumps({"seq": seq, "type": event["eventtype"], "id": event.get("id"),
                                          "chat_jid": data.get("chat_jid"), "time": event.get("time"),
                                          "data": data}, ensure_ascii=False), flush=True)
                        printed += 1
                await msg.ack()  # handled: the durable position moves past it
    finally:
        await nc.drain()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--durable", help="a durable consumer name of your own (not svc_*)")
    start.add_argument("--since", type=int, help="start after this stream sequence")
    start.add_argument("--at", help="start at this time (ISO 8601)")
    parser.add_argument("--server", help="NATS URL (default: data/reader/url, written by `nanoclaw up`)")
    parser.add_argument("--user", default="reader")
    parser.add_argument("--password-file", default="data/reader/password")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many events (0: follow)")
    args = parser.parse_args()
    if args.server is None:
        url_file = Path("data/reader/url")
        if not url_file.exists():
            parser.error("no --server and no data/reader/url: is `nanoclaw up` running here?")
        args.server = url_file.read_text().strip()
    try:
        return asyncio.run(follow(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
