"""`Memory`: the model's long-term weight memory, persisted in one directory.

Layout of a memory directory::

    memory.json              the committed state (atomically replaced: the commit point)
    total-<gen>.safetensors  dense sum of every applied delta, per target (L, d_out, d_in),
                             plus the merge strategy's own tensors
    items/<id>.safetensors   one item: its raw factors and, when separable, its applied ones
    ledger.jsonl             append-only event log (add, forget, snapshot, rollback, ...)
    snapshots/<name>/        a copy of memory.json and its total
    lock                     held (flock) by the one process allowed to write

A write goes item files → new total → ledger line → memory.json (rename). A process killed
anywhere before the rename leaves the previous state intact; files it left behind are
swept on the next open, and ledger lines past the committed count are dropped.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from reverie.errors import ReverieError
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.lora import target_module
from reverie.memory.merges import MERGES, Dense, Lowrank, MergeStrategy, dense
from reverie.memory.route import ROUTERS, Router, key_phrases
from reverie.utils import atomic_write_bytes, atomic_write_text, sha256_file

VERSION = 1
SLAB_ITEMS = 64
"""Items a memory keeps in one fixed buffer for answering (``factors(..., slab=True)``),
least recently used out first: a question about one of them reads no file (paired, T = 1000:
1.04-1.05x the plain answer's time, against 1.06-1.07x when its file is read first). One
buffer allocated once, not a cache of mappings or of tensors: keeping 64 mappings open (or
64 decoded items) raised peak RSS at T = 1000 to 1.19-1.38x that at T = 1 (mappings
scattered through the address space and item-sized allocations fragment the heap); the
buffer costs its ~20 MB and no more."""


class MemoryError_(ReverieError):
    """A memory directory is locked, corrupt, or built for another model."""


@dataclass
class Item:
    """One consolidated document."""

    id: str
    source_sha256: str
    time: float
    batch: int
    exact: bool
    """Its applied contribution is stored exactly (forget restores the weights)."""
    meta: dict[str, Any]


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> str:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return sha256_file(path)


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, RuntimeError)  # what a bad item file raises (JSONDecodeError is a ValueError)


def _mapped(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors as views of a private memory map of the file: read from
    the page cache when used, nothing copied onto the heap. safetensors' own ``load_file``
    copies every tensor: for an item read for one routed answer that cost ~4% of the answer
    (``reverie bench sequential``, ``answer_ratio_routed``). Writes to a view stay in this
    process (copy-on-write) and never reach the file."""
    try:
        size = path.stat().st_size
        raw = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size))  # type: ignore[arg-type]  # from_file is typed as the base class
        return _parse(raw)
    except _UNREADABLE as e:
        raise MemoryError_(f"corrupt memory item {path}: {e}") from e


def _read_into(path: Path, row: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """A safetensors file read into ``row`` (uint8, a slot of a memory's answering buffer),
    its tensors as views of it; None when the file does not fit. For a file this small one
    read is cheaper than a mapping: the mapping's page faults and unmapping slowed a routed
    answer by 1.09-1.11x where reading took 1.06-1.07x (cold, paired, T = 1000)."""
    try:
        with open(path, "rb", buffering=0) as fh:
            n = fh.readinto(memoryview(row.numpy()))  # type: ignore[arg-type]  # a uint8 ndarray is a writable buffer
            if n == row.numel() and fh.read(1):
                return None
        return _parse(row[:n])
    except _UNREADABLE as e:
        raise MemoryError_(f"corrupt memory item {path}: {e}") from e


def _parse(raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file held in ``raw`` (uint8), as views of it."""
    n = int.from_bytes(raw[:8].numpy().tobytes(), "little")
    header = json.loads(raw[8 : 8 + n].numpy().tobytes())
    out = {}
    for name, info in header.items():
        if name != "__metadata__":
            lo, hi = info["data_offsets"]
            if 8 + n + hi > raw.numel():
                raise ValueError(f"tensor {name} runs past the end of the file")
            out[name] = raw[8 + n + lo : 8 + n + hi].view(_DTYPES[info["dtype"]]).view(info["shape"])
    return out


def _flat(prefix: str, f: Lowrank) -> dict[str, torch.Tensor]:
    out = {}
    for t, (A, B) in f.items():
        out[f"{prefix}.{t}.A"], out[f"{prefix}.{t}.B"] = A.float(), B.float()
    return out


def _unflat(prefix: str, d: dict[str, torch.Tensor]) -> Lowrank:
    ts = {k[len(prefix) + 1 : -2] for k in d if k.startswith(prefix + ".")}
    return {t: (d[f"{prefix}.{t}.A"], d[f"{prefix}.{t}.B"]) for t in ts}


class Memory:
    """Open (or create) a memory in ``path`` for a base model with ``fingerprint``.

    ``targets`` maps each target module to (L, d_out, d_in); ``strategy`` names a merge
    strategy from the registry (fixed at creation). Opening takes the writer lock unless
    ``readonly``.
    """

    def __init__(self, path: str | Path, fingerprint: str, targets: dict[str, tuple[int, int, int]],
                 strategy: str = "add", strategy_kw: dict | None = None, readonly: bool = False, repair: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._lock_fd: int | None = None
        self._slab: torch.Tensor | None = None  # (SLAB_ITEMS, slot bytes) uint8, allocated at first use
        self._slots: OrderedDict[str, tuple[int, dict[str, torch.Tensor]]] = OrderedDict()  # item id -> slot, views
        self._free: list[int] = []  # rows of the buffer holding no item
        self._spare = SLAB_ITEMS  # the row the next file is read into
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "items").mkdir(exist_ok=True)
        if not readonly:
            self._lock()
        try:
            self._open(fingerprint, targets, strategy, strategy_kw, readonly, repair)
        except BaseException:
            self.close()  # a memory that failed to open holds no lock
            raise

    def _open(self, fingerprint: str, targets: dict[str, tuple[int, int, int]], strategy: str,
              strategy_kw: dict | None, readonly: bool, repair: bool) -> None:
        state_p = self.path / "memory.json"
        if state_p.is_file():
            for attempt in range(3):  # a reader may race a writer replacing the total: read again
                try:
                    self.state = json.loads(state_p.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise MemoryError_(f"corrupt memory state {state_p}: {e}") from e
                if not isinstance(self.state, dict) or not {"version", "total", "items", "strategy"} <= self.state.keys():
                    raise MemoryError_(f"corrupt memory state {state_p}: not a reverie memory")
                if self.state.get("fingerprint") != fingerprint:
                    raise MemoryError_(f"memory {self.path} belongs to another base model "
                                       f"(fingerprint {self.state.get('fingerprint')}, this model {fingerprint})")
                self.strategy = _strategy(self.state["strategy"], self.state["strategy_kw"])
                try:
                    self.total, self.strategy.state = self._load_total(self.state)
                    break
                except MemoryError_:
                    if repair and not readonly:
                        self.repaired = self._rebuild(targets)
                        break
                    if not readonly or attempt == 2:
                        raise
                    time.sleep(0.2)
        else:
            if strategy not in MERGES:
                raise MemoryError_(f"unknown merge strategy {strategy!r} (known: {', '.join(MERGES)})")
            self.strategy = _strategy(strategy, strategy_kw or {})
            self.total = {t: torch.zeros(s) for t, s in targets.items()}
            self.state = {"version": VERSION, "fingerprint": fingerprint, "strategy": strategy,
                          "strategy_kw": strategy_kw or {}, "generation": 0, "total": None, "total_sha256": None,
                          "items": [], "bias": None, "ledger_lines": 0, "batches": 0}
            if not readonly:
                self._commit(self.state, self.total)
        if not readonly:
            self._sweep()

    repaired: str | None = None
    """What opening with ``repair`` rebuilt (None: nothing needed it)."""

    # -- locking and crash recovery ------------------------------------------------------------------
    def _lock(self) -> None:
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MemoryError_(f"memory {self.path} is being written by another process; wait for it or use another --memory") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        self.unload()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sweep(self) -> None:
        """Remove what an interrupted write left behind; drop uncommitted ledger lines."""
        keep = {self.state["total"]}
        for p in self.path.iterdir():
            if p.name.startswith("total-") and p.name not in keep or p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink()
        live = set(self.state["items"]) | ({self.state["bias"]} if self.state["bias"] else set()) | self._snapshot_items()
        for p in (self.path / "items").iterdir():
            if p.stem not in live:
                p.unlink()
        led = self.path / "ledger.jsonl"
        if led.is_file():
            raw = led.read_bytes()
            data = b"".join(line + b"\n" for line in raw.split(b"\n")[: self.state["ledger_lines"]])
            if data != raw:
                atomic_write_bytes(led, data)

    def _snapshot_items(self) -> set[str]:
        """Items some snapshot still needs (kept by the sweep)."""
        snaps = self.path / "snapshots"
        if not snaps.is_dir():
            return set()
        return {i for s in snaps.iterdir() if (s / "memory.json").is_file()
                for i in json.loads((s / "memory.json").read_text())["items"]}

    def _load_total(self, state: dict) -> tuple[Dense, dict[str, torch.Tensor]]:
        p = self.path / state["total"]
        if not p.is_file() or sha256_file(p) != state["total_sha256"]:
            raise MemoryError_(f"memory {self.path}: {state['total']} is missing or does not match its checksum "
                               f"(rebuild it from the items: `reverie memories repair --memory {self.path}`)")
        d = load_file(str(p))
        return ({k[6:]: v for k, v in d.items() if k.startswith("total.")},
                {k[6:]: v for k, v in d.items() if k.startswith("state.")})

    def _rebuild(self, targets: dict[str, tuple[int, int, int]]) -> str:
        """The total rebuilt from the live items (as applied) and the bias, committed with a
        ``repair`` ledger event; returns what was done. Exact where every item's applied
        factors are stored and no re-compression mixed them; otherwise their raw factors
        stand in (said in the returned line)."""
        if self.state["bias"] and not self._item_file(self.state["bias"]).is_file():
            raise MemoryError_(f"memory {self.path}: its bias item is missing too; the memory cannot be rebuilt")
        total = {t: torch.zeros(s) for t, s in targets.items()}
        recompressed = set(self.state.get("recompressed", []))
        entries = self.live_entries()
        inexact = [i for i in self.state["items"] if not entries[i]["exact"] or i in recompressed]
        applied = [self.factors(i, applied=True) for i in self.state["items"]]
        self.strategy.rebuild(applied)
        parts = (applied if self.strategy.merged else []) + ([self.factors(self.state["bias"])] if self.state["bias"] else [])
        for f in parts:
            for t, W in dense(f).items():
                total[t] += W
        how = "exactly" if not inexact or not self.strategy.merged else f"approximately ({len(inexact)} items were mixed by the strategy)"
        self._commit(self.state, total, [{"event": "repair", "time": time.time(), "lost": self.state["total"],
                                          "items": len(self.state["items"]), "exact": how == "exactly"}])
        return f"rebuilt the total from {len(self.state['items'])} items, {how}"

    def _commit(self, state: dict, total: Dense, events: list[dict] | None = None) -> None:
        if self.readonly:
            raise MemoryError_(f"memory {self.path} was opened read-only")
        gen = state["generation"] + 1
        name = f"total-{gen:06d}.safetensors"
        tensors = {f"total.{t}": W for t, W in total.items()} | {f"state.{k}": v for k, v in self.strategy.state.items()}
        sha = _save_tensors(self.path / name, tensors)
        led = self.path / "ledger.jsonl"
        n = state["ledger_lines"]
        if events:
            with open(led, "ab") as f:
                for e in events:
                    f.write((json.dumps(e, sort_keys=True) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
            n += len(events)
        new = {**state, "generation": gen, "total": name, "total_sha256": sha, "ledger_lines": n}
        atomic_write_text(self.path / "memory.json", json.dumps(new, indent=1))  # the commit point
        old = state.get("total")
        self.state, self.total = new, total
        if old and old != name and (self.path / old).exists():
            (self.path / old).unlink()

    # -- items ---------------------------------------------------------------------------------------
    @property
    def items(self) -> list[str]:
        return list(self.state["items"])

    def ledger(self) -> list[dict]:
        led = self.path / "ledger.jsonl"
        if not led.is_file():
            return []
        return [json.loads(line) for line in led.read_text().splitlines()[: self.state["ledger_lines"]]]

    def item(self, item_id: str) -> dict:
        for e in reversed(self.ledger()):
            if e.get("event") == "add" and e["id"] == item_id:
                return e
        raise MemoryError_(f"no memory item {item_id!r} in {self.path}")

    def factors(self, item_id: str, applied: bool = True, slab: bool = False) -> Lowrank:
        """An item's low-rank delta (scale folded into B): as applied, or as injected; views
        of the item's file mapped into memory (``_mapped``: an item's file never changes once
        written), so read them and copy before changing them.

        ``slab``: views of the memory's answering buffer instead (see ``SLAB_ITEMS``), valid
        until ``SLAB_ITEMS`` other items have been taken this way: for using at once, as
        ``reverie.memory.routed`` does, never for keeping."""
        hit = self._slots.get(item_id) if slab else None
        if hit is not None:  # the answering path: nothing but the lookup
            self._slots.move_to_end(item_id)
            d = hit[1]
        elif slab:
            d = self._to_slab(item_id, self._item_file(item_id))
        else:
            p = self._item_file(item_id)
            if not p.is_file():
                raise MemoryError_(f"no memory item {item_id!r} in {self.path}")
            d = _mapped(p)
        f = _unflat("applied", d)
        return f if applied and f else _unflat("raw", d)

    def _item_file(self, item_id: str) -> Path:
        return self.path / "items" / f"{item_id}.safetensors"

    def _to_slab(self, item_id: str, p: Path) -> dict[str, torch.Tensor]:
        if self._slab is None:  # slots of twice the first item: repaired items carry extra ranks
            try:
                size = p.stat().st_size
            except OSError:
                raise MemoryError_(f"no memory item {item_id!r} in {self.path}") from None
            # One row more than it keeps: a file is read into the spare row, and an item is
            # evicted only once the read has succeeded and fitted.
            self._slab = torch.empty(SLAB_ITEMS + 1, -(-2 * size // 64) * 64, dtype=torch.uint8)
            self.unload()
        try:
            d = _read_into(p, self._slab[self._spare])
        except MemoryError_:
            if not p.is_file():
                raise MemoryError_(f"no memory item {item_id!r} in {self.path}") from None
            raise
        if d is None:  # larger than a slot: mapped, not kept
            return _mapped(p)
        row = self._spare
        self._spare = self._free.pop() if self._free else self._slots.popitem(last=False)[1][0]
        self._slots[item_id] = (row, d)
        return d

    def unload(self) -> None:
        """Empty the answering buffer (the next ``factors(..., slab=True)`` of each item reads its file)."""
        self._slots.clear()
        self._spare = SLAB_ITEMS
        self._free = list(range(SLAB_ITEMS)) if self._slab is not None else []

    def live_entries(self, ledger: list[dict] | None = None) -> dict[str, dict]:
        """Item id -> its ledger entry, for the items now in the memory (``ledger``: the
        result of :meth:`ledger`, when the caller has already read it)."""
        live = set(self.state["items"])
        return {e["id"]: e for e in (self.ledger() if ledger is None else ledger) if e.get("event") == "add" and e["id"] in live}

    def router(self, kind: str = "key", questions: dict[str, list[str]] | None = None,
               ledger: list[dict] | None = None, names: dict[str, list[str]] | None = None, **kw: object) -> Router:
        """A router over the live items (how a ``bank`` memory chooses the item a question is
        about; see reverie.memory.route), keyed from their ledger entries; ``questions``:
        item -> what it is known to answer (the sleep cycle's active probes); ``names``:
        item -> whom and what it is mainly about."""
        if kind not in ROUTERS:
            raise MemoryError_(f"unknown router {kind!r} (known: {', '.join(ROUTERS)})")
        r = ROUTERS[kind](**kw)
        entries = self.live_entries(ledger)
        for i in self.state["items"]:  # in the order they were stored: the newest wins a tie
            r.add(i, entries[i].get("key", []), self.factors(i) if kind == "activation" else None, (questions or {}).get(i),
                  entries[i].get("document_sha256"), (names or {}).get(i))
        return r

    def add(self, adapters: list[Adapter], sources: list[str], guard_info: list[dict] | None = None,
            notes: list[dict] | None = None, excerpts: list[str] | None = None,
            extra: list[dict] | None = None) -> list[str]:
        """Consolidate a batch of adapters (one per source hash) under the merge strategy;
        ``notes`` are extra ledger events committed with it (e.g. refused updates), ``extra``
        more fields for each item's ledger entry (e.g. its probes, see reverie.sleep). A bias
        adapter (see :meth:`Adapter.parts`) is added once, with the memory's first item."""
        if not adapters:
            if notes:
                self._commit(self.state, self.total, notes)
            return []
        self.check_fits(adapters)
        raw: list[Lowrank] = []
        events, ids = list(notes or []), []
        bias: Lowrank | None = None
        for ad in adapters:
            doc, b = ad.parts()
            bias = bias or b  # the same for every adapter of one hypernetwork
            raw.append(doc)
        state = {**self.state, "items": list(self.state["items"]), "batches": self.state["batches"] + 1}
        total = {t: W.clone() for t, W in self.total.items()}
        if bias is not None and not state["bias"]:
            _save_tensors(self.path / "items" / "bias.safetensors", _flat("applied", bias))
            for t, W in dense(bias).items():
                total[t] += W
            state["bias"] = "bias"
            events.append({"event": "bias", "time": time.time()})
        applied = self.strategy.apply(total, raw)
        for t, W in applied.total.items():
            total[t] += W
        now = time.time()
        for i, (f, src) in enumerate(zip(raw, sources, strict=True)):
            item_id = uuid.uuid4().hex[:12]
            # Stored once when the strategy applied the item as it came (``factors`` falls back to raw).
            mine = applied.items[i] if applied.items is not None else None
            tensors = _flat("raw", f) | ({} if mine is None or mine is f else _flat("applied", mine))
            _save_tensors(self._item_file(item_id), tensors)
            exact = applied.items is not None
            norm = sum(float(W.norm() ** 2) for W in dense(applied.items[i] if applied.items else f).values()) ** 0.5
            layers = sorted({int(li) for A, B in f.values() for li in range(A.shape[0]) if B[li].abs().sum() > 0})
            events.append({"event": "add", "id": item_id, "time": now, "batch": state["batches"], "exact": exact,
                           "strategy": self.strategy.name, "source_sha256": src, "layers": layers,
                           "delta_norm": round(norm, 5), "guard": (guard_info or [{}] * len(raw))[i],
                           "excerpt": (excerpts or [""] * len(raw))[i][:240],
                           "key": key_phrases((excerpts or [""] * len(raw))[i]),  # the bank's routing key
                           "meta": {k: v for k, v in adapters[i].meta.items() if isinstance(v, (str, int, float))},
                           **(extra[i] if extra else {})})
            state["items"].append(item_id)
            ids.append(item_id)
        rep = self.strategy.after(total, len(state["items"]))
        if rep is not None:
            total = rep
            for it in state["items"]:
                _mark_inexact(events, it)
            state["recompressed"] = list(state["items"])
            events.append({"event": "recompress", "time": now, "n_items": len(state["items"])})
        self._commit(state, total, events)
        return ids

    def check_fits(self, adapters: list[Adapter]) -> None:
        """Refuse adapters that write other modules (or shapes) than this memory holds, e.g.
        from a hypernetwork with other targets than the one the memory was created with."""
        for ad in adapters:
            for t, (A, B) in ad.factors.items():
                writes = (A.shape[0], B.shape[-2], A.shape[-1])  # (L, d_out, d_in), as the total's
                if t not in self.total or tuple(self.total[t].shape) != writes:
                    held = ", ".join(f"{k} {tuple(W.shape)}" for k, W in self.total.items())
                    raise MemoryError_(f"memory {self.path} holds {held}; this adapter writes {t} {writes} "
                                       "(another hypernetwork's targets?): use a new --memory for it")

    def forget(self, item_id: str, reason: str | None = None) -> bool:
        """Remove an item's contribution; returns whether that was exact. ``reason`` goes
        into the ledger (e.g. "transferred": its knowledge now lives in replay deltas)."""
        if item_id not in self.state["items"]:
            raise MemoryError_(f"no memory item {item_id!r} in {self.path}")
        entry = self.item(item_id)
        exact = entry["exact"] and item_id not in self.state.get("recompressed", [])
        total = {t: W.clone() for t, W in self.total.items()}
        if self.strategy.merged:  # a bank's items never entered the total
            for t, W in dense(self.factors(item_id, applied=exact)).items():
                total[t] -= W
        state = {**self.state, "items": [i for i in self.state["items"] if i != item_id]}
        self.unload()  # its slot, if it has one, must not answer again
        ev = {"event": "forget", "id": item_id, "time": time.time(), "exact": exact} | ({"reason": reason} if reason else {})
        self._commit(state, total, [ev])
        return exact

    # -- snapshots -----------------------------------------------------------------------------------
    def snapshot(self, name: str) -> Path:
        d = self.path / "snapshots" / name
        if d.exists():
            raise MemoryError_(f"snapshot {name!r} already exists in {self.path}")
        tmp = d.with_name(f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copy2(self.path / self.state["total"], tmp / self.state["total"])
        atomic_write_text(tmp / "memory.json", json.dumps(self.state, indent=1))
        tmp.rename(d)
        self._commit(self.state, self.total, [{"event": "snapshot", "name": name, "time": time.time()}])
        return d

    def snapshots(self) -> list[str]:
        s = self.path / "snapshots"
        return sorted(p.name for p in s.iterdir() if not p.name.startswith(".")) if s.is_dir() else []

    def rollback(self, name: str) -> None:
        d = self.path / "snapshots" / name
        if not (d / "memory.json").is_file():
            raise MemoryError_(f"no snapshot {name!r} in {self.path} (have: {', '.join(self.snapshots()) or 'none'})")
        snap = json.loads((d / "memory.json").read_text())
        p = d / snap["total"]
        if sha256_file(p) != snap["total_sha256"]:
            raise MemoryError_(f"snapshot {name!r} is corrupt (checksum mismatch)")
        tensors = load_file(str(p))
        self.strategy.state = {k[6:]: v for k, v in tensors.items() if k.startswith("state.")}
        total = {k[6:]: v for k, v in tensors.items() if k.startswith("total.")}
        state = {**snap, "generation": self.state["generation"], "total": self.state["total"],
                 "ledger_lines": self.state["ledger_lines"]}
        self._commit(state, total, [{"event": "rollback", "name": name, "time": time.time()}])
        self.unload()

    # -- using it ------------------------------------------------------------------------------------
    def nbytes(self) -> int:
        """Bytes on disk."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def delta_norm(self) -> float:
        return sum(float(W.norm() ** 2) for W in self.total.values()) ** 0.5

    def as_adapter(self, rank: int | None = None) -> Adapter:
        """The whole memory as one LoRA adapter (SVD of the total; exact at full rank)."""
        fac = {}
        for t, W in self.total.items():
            U, S, Vh = torch.linalg.svd(W, full_matrices=False)
            k = rank or int((S > S.amax() * 1e-6).sum(-1).max().item()) or 1
            fac[t] = (Vh[:, :k].contiguous(), (U[..., :k] * S[:, None, :k]).contiguous())
        return Adapter(fac, 1.0, meta={"items": len(self.items)})

    def check_mergeable(self) -> None:
        """Refuse, with one line, to stand for one merged model when this memory is a bank."""
        if self.strategy.name == "bank":
            raise MemoryError_(f"memory {self.path} is a bank: its items are chosen per question, so no one merged "
                               "model holds them; export it as peft instead (`reverie export peft DIR`, "
                               "Learner.export_peft): one adapter per item and their keys")

    def export_bank(self, dest: str | Path, base_model_path: str = "") -> Path:
        """A bank memory has no single adapter (its items are routed per question): each
        live item as its own peft adapter under ``items/<id>/``, what every answer carries
        (the bias) under ``shared/``, and ``routes.json`` (each item's document key)."""
        d = Path(dest)
        self.as_adapter().save(d / "shared", base_model_path)
        keys = {i: e.get("key", []) for i, e in self.live_entries().items()}
        for i in self.state["items"]:
            Adapter(self.factors(i), 1.0, meta={"item": i}).save(d / "items" / i, base_model_path)
        atomic_write_text(d / "routes.json", json.dumps({"router": "key", "items": keys}, indent=1))
        return d


def _mark_inexact(events: list[dict], item_id: str) -> None:
    for e in events:
        if e.get("id") == item_id:
            e["exact"] = False


def _strategy(name: str, kw: dict) -> MergeStrategy:
    return MERGES[name](**kw)


def memory_targets(model: torch.nn.Module, n_layers: int, targets: list[str]) -> dict[str, tuple[int, int, int]]:
    """target -> (layers, d_out, d_in): the shape of the memory's dense total."""
    return {t: (n_layers, *target_weight(model, 0, t).shape) for t in targets}  # type: ignore[misc]


def target_weight(model: torch.nn.Module, layer: int, target: str) -> torch.Tensor:
    """The weight of one layer's target module (what a memory's total adds to)."""
    w = target_module(model, layer, target).weight
    assert isinstance(w, torch.Tensor)
    return w
