"""Tamper evidence for the event log: a hash chain per aggregate, written with each commit, and a whole-stream
digest the auditor computes and keeps (docs/audit.md, "What the chain proves").

**Why per aggregate, not per stream.** Several services append to ``NC_EVENTS`` at once. A link to the previous
message *of the stream* would need every writer to know it before publishing, so every append would have to be
serialised (``Nats-Expected-Last-Sequence`` on the whole stream: one writer wins, every other retries). But every
commit already names the previous commit *of its aggregate*: ``Nats-Expected-Last-Subject-Sequence`` (the
optimistic-concurrency check) makes the server refuse the commit unless the aggregate's last message is exactly
the one the writer expected. So a writer that links to the message at its expected sequence links to the true
predecessor whenever the server accepts the commit, with no extra coordination: correct under any number of
concurrent appenders.

Headers of a chained commit (written by events/store/jetstream.py)::

    Nc-Chain-Prev: <hex link of the aggregate's previous commit, empty for its first>
    Nc-Chain:      <hex sha256 of "nc-chain/1", Nc-Chain-Prev, subject, Nats-Msg-Id, Nc-Aggregate-Version,
                    Nc-Event-Types and the body, newline-separated>

A message without ``Nc-Chain`` (written before the chain existed, or published past our store: a bad message)
still takes part: its link is :func:`content_hash` of its subject and body, so the next chained commit of its
aggregate covers it.

**The whole-stream digest** ``R(n) = sha256(R(n-1) | n | content hash of message n)`` is computed by the one
reader that verifies (no concurrency there) and covers what the per-aggregate chain cannot: the order of
messages *across* aggregates, unchained messages, and the end of the log. Recorded outside the machine as a
checkpoint ``(n, R(n))``, it lets a later verify prove that the first ``n`` messages are unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterable, Mapping, Protocol

from events.store.port import RawMessage

HDR_CHAIN = "Nc-Chain"
HDR_CHAIN_PREV = "Nc-Chain-Prev"
_VERSION = "Nc-Aggregate-Version"
_TYPES = "Nc-Event-Types"
_MSG_ID = "Nats-Msg-Id"


def link(prev: str, subject: str, msg_id: str, version: str, types: str, body: bytes) -> str:
    """The chain hash of one commit (hex sha256)."""
    h = hashlib.sha256(b"nc-chain/1\n")
    for part in (prev, subject, msg_id, version, types):
        h.update(part.encode())
        h.update(b"\n")
    h.update(body)
    return h.hexdigest()


def content_hash(subject: str, body: bytes) -> str:
    """The link of a message that carries no chain headers (hex sha256 of its subject and body)."""
    h = hashlib.sha256(b"nc-content/1\n")
    h.update(subject.encode())
    h.update(b"\n")
    h.update(body)
    return h.hexdigest()


def chain_headers(prev: str, subject: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """The two chain headers of a commit about to be published with ``headers`` (which hold its message id,
    version and event types) after the aggregate's commit whose link is ``prev`` ("" for a new aggregate)."""
    return {HDR_CHAIN_PREV: prev,
            HDR_CHAIN: link(prev, subject, headers.get(_MSG_ID, ""), headers.get(_VERSION, ""),
                            headers.get(_TYPES, ""), body)}


def message_link(subject: str, headers: Mapping[str, str] | None, body: bytes) -> str:
    """What the next commit of the aggregate links to: the message's ``Nc-Chain``, or its content hash."""
    return (headers or {}).get(HDR_CHAIN) or content_hash(subject, body)


def aggregate_key(subject: str) -> str:
    """The aggregate a message belongs to: its subject without the event type (``nc.evt.ctx.type.id``)."""
    parts = subject.split(".")
    return ".".join(parts[:5]) if len(parts) == 6 else subject


@dataclass(frozen=True)
class Finding:
    """A problem at stream sequence ``seq``: ``kind`` is ``altered`` (content or chain headers changed, or it
    links to another version of its predecessor than the log's), ``missing`` (a predecessor is not in the log
    before it: dropped, or moved after it), ``out of order`` (it follows an older version than its aggregate
    has reached: reordered, or duplicated), ``gap`` (stream sequences
    missing), ``checkpoint`` (the log up to a recorded checkpoint is not what it was) or ``unchained`` (no chain
    headers: written before the chain existed or past our store; reported, not a failure)."""

    seq: int
    kind: str
    detail: str

    @property
    def fails(self) -> bool:
        return self.kind != "unchained"


@dataclass(frozen=True)
class Checkpoint:
    """The whole-stream digest after message ``seq`` (hex)."""

    seq: int
    digest: str


@dataclass
class ChainVerifier:
    """Feed every message of the stream in order (:meth:`feed`), then read :attr:`findings`. ``checkpoints``:
    digests recorded earlier, each compared when its sequence is reached.

    Memory: one (sequence, link, version) per aggregate (≈200 bytes each); reordered and dropped commits are
    told apart by the aggregate versions in the headers.
    """

    checkpoints: Iterable[Checkpoint] = ()
    findings: list[Finding] = field(default_factory=list)
    last_seq: int = 0
    digest: str = hashlib.sha256(b"nc-stream/1").hexdigest()
    messages: int = 0
    chained: int = 0

    def __post_init__(self) -> None:
        self._heads: dict[str, tuple[int, str, int]] = {}  # aggregate -> (seq, link, version) of its newest commit
        self._expect = {c.seq: c.digest for c in self.checkpoints}

    @property
    def first_failure(self) -> Finding | None:
        return next((f for f in self.findings if f.fails), None)

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.last_seq, self.digest)

    def feed(self, seq: int, subject: str, headers: Mapping[str, str] | None, body: bytes) -> None:
        hdrs = headers or {}
        if seq != self.last_seq + 1:
            self.findings.append(Finding(seq, "gap", f"stream sequence(s) {self.last_seq + 1}..{seq - 1} missing"))
        self.messages += 1
        key = aggregate_key(subject)
        head = self._heads.get(key)
        head_seq, head_link, head_version = head if head else (0, "", 0)
        version = _int(hdrs.get(_VERSION)) or head_version
        if HDR_CHAIN in hdrs:
            self.chained += 1
            prev = hdrs.get(HDR_CHAIN_PREV, "")
            self._check_link(seq, subject, hdrs, body, prev)
            if prev != head_link:
                self.findings.append(self._misplaced(seq, key, version, len(hdrs.get(_TYPES, "").split(",")),
                                                     head_seq, head_version))
        else:
            self.findings.append(Finding(seq, "unchained", f"{subject}: no {HDR_CHAIN} header"))
        if head is None or version >= head_version:  # an older commit seen late does not move the head back
            self._heads[key] = (seq, message_link(subject, hdrs, body), version)
        self.digest = hashlib.sha256(f"{self.digest}|{seq}|{content_digest(subject, hdrs, body)}".encode()).hexdigest()
        self.last_seq = seq
        expected_digest = self._expect.get(seq)
        if expected_digest is not None and expected_digest != self.digest:
            self.findings.append(Finding(seq, "checkpoint", f"the log up to seq {seq} differs from the checkpoint "
                                         "recorded then (a message before it was changed, removed, added or moved)"))

    def finish(self) -> None:
        """After the last message: a checkpoint beyond the end of the log means messages were removed."""
        for seq in sorted(self._expect):
            if seq > self.last_seq:
                self.findings.append(Finding(seq, "checkpoint", f"a checkpoint was recorded at seq {seq}, but the "
                                             f"log ends at seq {self.last_seq}"))

    @staticmethod
    def _misplaced(seq: int, key: str, version: int, events: int, head_seq: int, head_version: int) -> Finding:
        """A commit whose ``Nc-Chain-Prev`` is not its aggregate's newest commit so far, told apart by versions:
        it follows an older version (reordered or duplicated), a newer one (a predecessor is missing), or the
        right version with another hash (that predecessor, or this commit, was rewritten)."""
        base = version - events
        where = f"the aggregate is at v{head_version}" + (f" (seq {head_seq})" if head_seq else "")
        if base < head_version:
            return Finding(seq, "out of order", f"{key} v{version}: follows v{base}, but {where}")
        if base > head_version:
            return Finding(seq, "missing", f"{key} v{version}: follows v{base}, but {where}: "
                           f"v{head_version + 1}..v{base} are not in the log before it")
        return Finding(seq, "altered", f"{key} v{version}: links to another v{base} than the one at seq {head_seq}")

    def _check_link(self, seq: int, subject: str, hdrs: Mapping[str, str], body: bytes, prev: str) -> None:
        expected = link(prev, subject, hdrs.get(_MSG_ID, ""), hdrs.get(_VERSION, ""), hdrs.get(_TYPES, ""), body)
        if expected != hdrs.get(HDR_CHAIN):
            self.findings.append(Finding(seq, "altered", f"{subject}: content does not match its {HDR_CHAIN} hash"))


def content_digest(subject: str, headers: Mapping[str, str], body: bytes) -> str:
    """A message's subject, chain-relevant headers and body, hashed (for the whole-stream digest)."""
    h = hashlib.sha256()
    for part in (subject, headers.get(_MSG_ID, ""), headers.get(_VERSION, ""), headers.get(_TYPES, ""),
                 headers.get(HDR_CHAIN_PREV, ""), headers.get(HDR_CHAIN, "")):
        h.update(part.encode())
        h.update(b"\n")
    h.update(body)
    return h.hexdigest()


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


class RawReader(Protocol):
    """What :func:`verify_log` needs: :meth:`events.store.jetstream.JetStreamEventStore.read_raw`."""

    def read_raw(self, *, after_seq: int = 0, follow: bool = False
                 ) -> AsyncIterator[RawMessage]: ...


async def verify_log(store: RawReader, checkpoints: Iterable[Checkpoint] = (),
                     progress: Callable[[int], None] | None = None) -> ChainVerifier:
    """Check the chain of every message of the store's stream, in order (``progress(seq)`` after each).

    Raises:
        EventStoreError: the stream cannot be read.
    """
    verifier = ChainVerifier(checkpoints)
    async for raw in store.read_raw():
        verifier.feed(raw.seq, raw.subject, raw.headers, raw.data)
        if progress is not None:
            progress(raw.seq)
    verifier.finish()
    return verifier
