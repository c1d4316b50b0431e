"""The log half of ``nanoclaw audit verify``: the hash chain of every commit (events/chain.py), checkpoints an
auditor keeps (JSON lines ``{"seq", "digest", "recorded_at"}``), and the report."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from events.chain import ChainVerifier, Checkpoint, verify_log
from services.cli.common import console, out

SHOWN = 20  # findings listed; the rest are counted


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Raises ``ValueError`` naming the file and line when it is not a checkpoint file."""
    found = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            found.append(Checkpoint(int(rec["seq"]), str(rec["digest"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a checkpoint line ({exc})") from None
    return found


def record_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append one line (the file is the auditor's: keep a copy off this machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"seq": checkpoint.seq, "digest": checkpoint.digest,
                             "recorded_at": datetime.now(timezone.utc).isoformat()}) + "\n")


async def check_chain(store, checkpoints: list[Checkpoint], total: int) -> ChainVerifier:
    with Progress(TextColumn("checking the chain"), BarColumn(), MofNCompleteColumn(), TextColumn("messages"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("chain", total=total)
        return await verify_log(store, checkpoints, progress=lambda seq: bar.update(task, completed=seq))


def report(result: ChainVerifier, checkpoints: list[Checkpoint]) -> bool:
    """Print what the chain check found; True when nothing fails."""
    failures = [f for f in result.findings if f.fails]
    unchained = [f for f in result.findings if not f.fails]
    for f in failures[:SHOWN]:
        out.print(f"  seq {f.seq}: {f.kind}: {f.detail}", markup=False, highlight=False)
    if len(failures) > SHOWN:
        out.print(f"  … and {len(failures) - SHOWN} more", markup=False, highlight=False)
    if unchained:
        seqs = ", ".join(str(f.seq) for f in unchained[:SHOWN]) + (" …" if len(unchained) > SHOWN else "")
        out.print(f"log chain: {len(unchained)} message(s) carry no chain headers (written before the chain "
                  f"existed, or past the event store): seq {seqs}", markup=False, highlight=False)
    checked = f"; {len(checkpoints)} checkpoint(s) compared" if checkpoints else ""
    if failures:
        first = failures[0]
        out.print(f"[red]log chain: BROKEN: first problem at seq {first.seq} ({first.kind}); {len(failures)} "
                  f"finding(s) in {result.messages} messages{checked}[/red]", highlight=False)
        return False
    out.print(f"log chain: intact ({result.messages} messages, {result.chained} chained{checked}); digest at seq "
              f"{result.last_seq}: {result.digest}", markup=False, highlight=False)
    return True
