"""The long-term weight memory: ledger, persistence, merge strategies, interference guard,
and :class:`Weights`, the one owner of the model's weights that composes them."""

from __future__ import annotations

import time

from reverie.hypernet.adapter import Adapter
from reverie.memory.guard import Guard, GuardConfig
from reverie.memory.merges import MERGES, dense
from reverie.memory.route import ROUTERS, KeyRouter, key_phrases
from reverie.memory.store import Memory, MemoryError_, memory_targets
from reverie.memory.weights import RouterFactory, Weights, routed


def _scaled(ad: Adapter, s: float) -> Adapter:
    """The adapter with its document ranks (not its bias ranks) scaled by ``s``."""
    rb = int(ad.meta.get("bias_rank", 0))
    fac = {}
    for t, (A, B) in ad.factors.items():
        B = B.clone()
        B[..., : B.shape[-1] - rb] *= s
        fac[t] = (A, B)
    return Adapter(fac, ad.scale, ad.layer_prefix, dict(ad.meta))


def _routed_probes(guard: Guard, key: list[str]) -> int:
    """How many of the guard's probe questions the bank's key router sends to an item keyed ``key``."""
    r = KeyRouter()
    r.add("new", key)
    return sum(r.route(q) == "new" for q in guard.questions)


def consolidate(weights: Weights, adapters: list[Adapter], sources: list[str], guard: Guard | None = None,
                excerpts: list[str] | None = None, extra: list[dict] | None = None,
                notes: list[dict] | None = None, drift_only: bool = False,
                pending: dict | None = None) -> list[str | None]:
    """Merge a batch of adapters into the memory attached to ``weights``, each first passed
    through the guard (scaled down until it fits, or refused), measured as a trial delta on
    the memory alone (adapters injected ad hoc are left out while it measures, so they
    neither spend its drift budget nor change what it accepts). Returns the new item ids
    (None where refused); the weights are then refreshed to the new memory and the injected
    adapters. ``extra`` adds fields to each item's ledger entry (also to its refusal note);
    ``notes`` are committed with it.
    ``drift_only``: the guard judges only the distance from the base model (see Guard.fits).
    ``pending``: a dense change the caller will commit right after (e.g. items it will
    forget), applied while the guard measures so that it judges the state that will be."""
    mem = weights.attached()
    mem.check_fits(adapters)
    extra = extra or [{} for _ in adapters]
    keep, srcs, out_idx = [], [], []
    infos: list[dict] = []
    notes = list(notes or [])
    if guard is not None:
        # Items are measured in order, each on top of the ones accepted before it in this
        # batch, so the guard sees what the batch does together, not each alone.
        weights.refresh(pending or None, injected=False)
        ref = guard.reference()
        acc: dict = {}
        bank = weights.is_bank
        for i, ad in enumerate(adapters):
            # keyed as the ledger will key it
            if bank and not _routed_probes(guard, extra[i].get("key") or key_phrases(excerpts[i] if excerpts else "")):
                # A bank item acts only on questions routed to it: none of the probes is, so
                # it changes none of their answers (measured as if merged, it would be judged
                # on questions it never sees).
                keep.append(ad)
                srcs.append(sources[i])
                infos.append({"decision": "accepted", "routed_probes": 0})
                out_idx.append(i)
                continue
            doc, bias = ad.parts()
            d = dense(doc)
            if bias is not None and not (mem.state["bias"] or acc):  # the bias goes in with the first item
                db = dense(bias)
                d = {t: W + db[t] for t, W in d.items()}
            s, tries = 1.0, []
            for _ in range(guard.cfg.tries):
                weights.refresh({t: s * W + acc.get(t, 0) + (pending or {}).get(t, 0) for t, W in d.items()},
                                injected=False)
                m, now = guard.measure(ref)
                tries.append({"scale": s, **m})
                if guard.fits(m, drift_only):
                    break
                s *= guard.cfg.shrink
            ok = guard.fits(tries[-1], drift_only)
            info = {"tries": tries, "decision": ("accepted" if s == 1.0 else f"scaled x{s:g}") if ok else "refused"}
            if ok:
                acc = {t: s * W + acc.get(t, 0) for t, W in d.items()}
                ref = now  # the next item is measured against the batch so far: the state just measured
                keep.append(_scaled(ad, s) if s != 1.0 else ad)
                srcs.append(sources[i])
                infos.append(info)
                out_idx.append(i)
            else:
                notes.append({"event": "refused", "source_sha256": sources[i], "time": time.time(), "guard": info, **extra[i]})
    else:
        keep, srcs, infos, out_idx = list(adapters), list(sources), [{}] * len(adapters), list(range(len(adapters)))
    try:
        ids = mem.add(keep, srcs, infos, notes, None if excerpts is None else [excerpts[i] for i in out_idx],
                      [extra[i] for i in out_idx])
    finally:
        weights.refresh()  # the weights follow the memory (also when the guard left a trial delta in them)
    res: list[str | None] = [None] * len(adapters)
    for i, item in zip(out_idx, ids, strict=True):
        res[i] = item
    return res


__all__ = ["MERGES", "ROUTERS", "Guard", "GuardConfig", "Memory", "MemoryError_", "RouterFactory", "Weights", "consolidate",
           "memory_targets", "routed"]
