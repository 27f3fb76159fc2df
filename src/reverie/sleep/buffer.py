"""The episodic buffer: what was read and not yet consolidated, persisted beside the memory.

One file per observation under ``<memory>/buffer/`` (``<seq>-<id>.json``), each written
atomically (temp file, fsync, rename): a process killed during ``read`` either stored the
observation whole or not at all, and never a half. Only the memory's writer (the holder of
its lock) writes here. Items that a committed sleep already consumed are recognised by
their id in the ledger and dropped on open, so a sleep killed after its commit and before
it cleared the buffer does not consolidate them twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reverie.base.model import BaseModel
from reverie.utils import atomic_write_text

if TYPE_CHECKING:
    from reverie.memory import Memory


@dataclass(frozen=True)
class Observation:
    id: str
    seq: int
    time: float
    text: str
    sha256: str


class Buffer:
    def __init__(self, path: str | Path, consumed: set[str] | None = None, readonly: bool = False):
        """``consumed``: ids a committed sleep already took (dropped here, or with
        ``readonly`` only hidden)."""
        self.path = Path(path)
        self.readonly = readonly
        self.consumed = set(consumed or ())
        if readonly:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for p in self.path.iterdir():
            if p.name.startswith("."):  # a write that never reached its rename
                p.unlink()
        for p in self.path.glob("*.json"):
            if p.stem.split("-", 1)[-1] in self.consumed:
                p.unlink()

    def _files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.glob("*.json") if not p.name.startswith(".") and p.stem.split("-", 1)[-1] not in self.consumed)

    def items(self) -> list[Observation]:
        """Pending observations, oldest first (a file that does not parse is named)."""
        out = []
        for p in self._files():
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
                out.append(Observation(d["id"], int(d["seq"]), float(d["time"]), d["text"], d["sha256"]))
            except (ValueError, KeyError, TypeError) as e:
                from reverie.memory import MemoryError_

                raise MemoryError_(f"corrupt buffer entry {p}: {e}") from e
        return out

    def __len__(self) -> int:
        return len(self._files())

    def add(self, text: str) -> Observation:
        files = self._files()
        seq = int(files[-1].name.split("-")[0]) + 1 if files else 0
        o = Observation(uuid.uuid4().hex[:12], seq, time.time(), text, hashlib.sha256(text.encode()).hexdigest())
        atomic_write_text(self.path / f"{seq:08d}-{o.id}.json", json.dumps(o.__dict__))
        return o

    def drop(self, ids: list[str]) -> None:
        gone = set(ids)
        for p in self._files():
            if p.stem.split("-", 1)[1] in gone:
                p.unlink()


def memory_buffer(mem: Memory, readonly: bool = False) -> Buffer:
    """The buffer of a memory, with what its committed sleeps consumed dropped (hidden when
    ``readonly``)."""
    return Buffer(mem.path / "buffer", {e["buffer_id"] for e in mem.ledger() if "buffer_id" in e}, readonly)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[A-Za-z0-9]+", text.lower()) if len(w) > 3}


def fit_context(bm: BaseModel, texts: list[str], question: str) -> str | None:
    """Working context for ``question`` from ``texts`` (oldest first): the texts sharing the
    most words with the question (all of them when none shares any), newest kept first as
    long as they fit the window, oldest out first; None when none fits.

    Why not simply the newest that fit: the embedded model reads one document at a time
    well, and with two biographies in context it mixes their facts up."""
    q = _words(question)
    overlap = [len(q & _words(t)) for t in texts]
    best = max(overlap, default=0)
    pool = [t for t, o in zip(texts, overlap, strict=True) if o == best] if best else texts
    bare = len(bm.encode(bm.prompt(question, "")))
    room = bm.max_length - bare - 24  # 24 tokens for the answer
    kept: list[str] = []
    for t in reversed(pool):
        if len(bm.encode(bm.prompt(question, " ".join([t, *kept])))) - bare > room:
            break
        kept.insert(0, t)
    return " ".join(kept) or None


__all__ = ["Buffer", "Observation", "fit_context", "memory_buffer"]
