"""Small shared helpers: atomic writes, checksums, progress bars."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T", bound=type)


def registrar(table: dict[str, Any]) -> Callable[[str], Callable[[T], T]]:
    """A ``register(name)`` class decorator for one registry (injectors, merge strategies…):
    it sets ``cls.name`` and files the class under that name."""

    def register(name: str) -> Callable[[T], T]:
        def deco(cls: T) -> T:
            cls.name = name  # type: ignore[attr-defined]
            table[name] = cls
            return cls

        return deco

    return register


def warmup_cosine(step: int, peak: float, warmup: int, length: int, floor: float = 0.1) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``peak`` to ``floor * peak``
    at step ``length`` (and flat after it)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, length - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename: never half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of a JSON-lines file (gzip-compressed when its name ends in ``.gz``),
    blank lines skipped. Raises OSError (missing or unreadable file) or ValueError (not
    UTF-8, not JSON, a line that is no object); callers name the file in their own error."""
    p = Path(path)
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    rows = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError("expected one JSON object per line")
    return rows


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_stages(folder: str | None) -> list[str]:
    """The commands that made the model or hypernetwork folder ``folder``, in order, from its
    ``manifest.json`` (its ``stages``, as command strings or as records with a ``command``,
    else its one ``command``); [] for none or a folder without a manifest (a run folder,
    whose own log says how it was made)."""
    m = {} if folder is None else read_manifest(folder)
    if not m:
        return []
    stages = m.get("stages") or ([m["command"]] if "command" in m else [])  # a hand-made folder may say neither
    return [st["command"] if isinstance(st, dict) else st for st in stages]


def read_manifest(folder: str | Path) -> dict:
    """A model or hypernetwork folder's ``manifest.json``; {} if it has none."""
    import json

    p = Path(folder) / "manifest.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def progress() -> Progress:
    """A rich progress bar on stderr (stdout stays clean for --json output)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(file=sys.stderr), transient=False,
    )


def save_train_state(ck: Path, model, opt, state: dict) -> None:
    """Checkpoint (weights, optimizer, JSON state) into a temp folder, then swap it in,
    so an interrupted save never leaves a half-written checkpoint."""
    import json
    import shutil

    import torch
    from safetensors.torch import save_model

    tmp = ck.with_name(ck.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))  # handles tied weights
    torch.save(opt.state_dict(), tmp / "optim.pt")
    atomic_write_text(tmp / "state.json", json.dumps(state))
    old = ck.with_name(ck.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if ck.exists():
        ck.rename(old)
    tmp.rename(ck)
    shutil.rmtree(old, ignore_errors=True)


def load_train_state(ck: Path, model, opt) -> dict | None:
    """Restore a checkpoint written by :func:`save_train_state`; None if there is none.
    The optimizer state loads with ``weights_only=True`` (no unpickling of code)."""
    import json

    import torch
    from safetensors.torch import load_model

    if not (ck / "state.json").is_file():
        return None
    load_model(model, str(ck / "model.safetensors"))
    opt.load_state_dict(torch.load(ck / "optim.pt", weights_only=True))
    return json.loads((ck / "state.json").read_text())


def read_state(ck: Path) -> dict | None:
    """The JSON state of a checkpoint, or None when there is none yet."""
    import json

    p = ck / "state.json"
    return json.loads(p.read_text()) if p.is_file() else None
