"""`Weights`: the one owner of a model's target weights.

Everything that changes the weights of the modules a hypernetwork writes goes through one
``Weights``, in the spirit of peft's ``LoraLayer`` (which alone merges, unmerges and applies
its adapters). It keeps the base weights W0 once and composes, on every write,

    W = W0 + memory total + injected adapters (+ a trial delta)

so no layer is silently dropped by another's write and removing an adapter is exact (the
sum is recomputed from W0, never undone by subtraction). The layers:

- the memory's merged total (:meth:`attach`; consolidate, forget and rollback change it,
  then :meth:`refresh`);
- ad-hoc adapters merged in (:meth:`inject`, :meth:`remove`: ``Learner.inject``,
  ``reverie ask --adapter``);
- a temporary trial delta (``refresh(trial)``: the interference guard measures a candidate
  update as if merged, on the memory alone: ``refresh(trial, injected=False)``, so that
  what the memory accepts does not depend on adapters injected ad hoc);
- a bank memory's items, applied per question on the fly (:meth:`answering`), never merged.

Arithmetic: a weight is ``(W0.float() + d).to(W0.dtype)`` with ``d`` the memory total, plus
the trial, plus the injected adapters' sum, each added only when present; a memory's
figures are therefore those of merging its total alone. A hypernetwork's context-independent
bias, which every one of its adapters carries, is composed once (see ``_summed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from reverie.hypernet.adapter import Adapter
from reverie.hypernet.lora import applied, concat
from reverie.memory.merges import Dense
from reverie.memory.route import Router
from reverie.memory.store import Memory, MemoryError_, target_weight

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from reverie.base.model import BaseModel

RouterFactory = Callable[[Memory], Router]
"""Builds a bank memory's router from the memory (rebuilt whenever the memory changes)."""

Key = tuple[str, int]  # (target, layer)


@contextmanager
def routed(model: nn.Module, mem: Memory, router: Router, question: str) -> Iterator[list[str]]:
    """Within the block, ``model`` answers ``question`` as a bank memory does: under the
    adapters of the items the question routes to (none: the weights as they are), taken from
    the memory's answering buffer and applied on the fly (``reverie.hypernet.lora.applied``).
    Yields those items' ids. Applied on the fly rather than merging the item in and restoring
    the weights: 1.03-1.05x the plain answer's time against 1.05-1.08x (``reverie bench
    sequential``, ``answer_ratio_routed``). :meth:`Weights.answering` is this with the
    owner's memory and router."""
    items = router.routes(question)
    parts = [mem.factors(i, slab=True) for i in items]  # used within the block only
    with applied(model, {} if not parts else parts[0] if len(parts) == 1 else concat(parts), 1.0):
        yield items


class Weights:
    """The one owner of ``model``'s target weights: W0 kept once, and the memory total,
    injected adapters and trial deltas composed on top of it (see the module notes).

    ``memory``: attach it at once (see :meth:`attach`). ``router``: how a bank memory's
    router is built (default: ``Memory.router``, keyed by the items' ledger keys)."""

    def __init__(self, model: nn.Module, memory: Memory | None = None, router: RouterFactory | None = None) -> None:
        self.model = model
        self._w0: dict[Key, torch.Tensor] = {}
        self._memory: Memory | None = None
        self._adapters: list[Adapter] = []
        # The injected adapters' summed delta per target (L, d_out, d_in), float32, keyed by
        # whether the memory already holds the hypernetwork's bias (see _summed).
        self._injected: dict[bool, Dense] = {}
        self._make_router: RouterFactory = router or (lambda m: m.router())
        self._router: tuple[int, Router] | None = None  # (memory generation it was built at, router)
        if memory is not None:
            self.attach(memory)

    # -- what is composed --------------------------------------------------------------------------
    @property
    def memory(self) -> Memory | None:
        """The attached memory, if any."""
        return self._memory

    def attached(self) -> Memory:
        """The attached memory; raises :class:`MemoryError_` when none is."""
        if self._memory is None:
            raise MemoryError_("no memory attached to these weights")
        return self._memory

    @property
    def is_bank(self) -> bool:
        """Whether the memory is a bank: its items are applied per question (:meth:`answering`),
        not merged, so there is no one merged model of it."""
        return self._memory is not None and self._memory.strategy.name == "bank"

    @property
    def adapters(self) -> list[Adapter]:
        """The injected adapters, in the order they were injected (a copy)."""
        return list(self._adapters)

    # -- writes ------------------------------------------------------------------------------------
    def attach(self, memory: Memory) -> None:
        """Compose ``memory``'s total into the weights (replacing any memory attached before)."""
        self._memory = memory
        self._router = None  # a router keyed by another memory's generation would be stale
        self._capture({t: W.shape[0] for t, W in memory.total.items()})
        self.refresh()

    def inject(self, adapter: Adapter) -> None:
        """Merge ``adapter`` (its ``scale * B @ A``) into the weights, on top of the memory."""
        self._capture({t: A.shape[-3] for t, (A, _) in adapter.factors.items()})
        self._adapters.append(adapter)
        self._injected = {}
        self.refresh()

    def remove(self, adapter: Adapter) -> None:
        """Take an injected adapter out again: the weights are recomposed from W0 without it,
        so they are exactly what they would be had it never been injected."""
        kept = [a for a in self._adapters if a is not adapter]
        if len(kept) == len(self._adapters):
            raise MemoryError_("that adapter is not injected into these weights")
        self._adapters = kept
        self._injected = {}
        self.refresh()

    @torch.no_grad()
    def refresh(self, trial: Dense | None = None, injected: bool = True) -> None:
        """Write W = W0 + memory total (+ ``trial``) + injected adapters into every weight
        this owner holds. ``trial``: a dense delta per target (L, d_out, d_in) that only this
        write carries (the guard's candidate update); the next refresh drops it. Without
        ``injected``, the injected adapters are left out of this write (the memory's own
        measurements judge the memory alone). Call after the memory changed (consolidate,
        forget, rollback)."""
        mem = self._memory
        inj = self._injected_sum(mem is not None and bool(mem.state["bias"])) if injected and self._adapters else {}
        for (t, i), w0 in self._w0.items():
            d: torch.Tensor | None = None
            if mem is not None and t in mem.total:
                d = mem.total[t][i]
            if trial is not None and t in trial:
                d = trial[t][i] if d is None else d + trial[t][i]
            if t in inj:
                d = inj[t][i] if d is None else d + inj[t][i]
            w = target_weight(self.model, i, t)
            w.copy_(w0 if d is None else (w0.float() + d).to(w.dtype))

    @torch.no_grad()
    def release(self) -> None:
        """Give the model back: its weights are W0 again, the memory is detached (not closed)
        and the injected adapters are dropped. W0 is kept, so the owner can be reused."""
        self._memory, self._router, self._adapters, self._injected = None, None, [], {}
        for (t, i), w0 in self._w0.items():
            target_weight(self.model, i, t).copy_(w0)

    @contextmanager
    def base(self) -> Iterator[None]:
        """Within the block the weights are the base model's (W0: no memory, no injected
        adapter); recomposed afterwards (e.g. the base model's answers to replay anchors,
        its surprise at a text)."""
        with torch.no_grad():
            for (t, i), w0 in self._w0.items():
                target_weight(self.model, i, t).copy_(w0)
        try:
            yield
        finally:
            self.refresh()

    # -- answering ---------------------------------------------------------------------------------
    def router(self) -> Router:
        """The bank's router, rebuilt when the memory has changed since it was built."""
        mem = self.attached()
        gen = mem.state["generation"]
        if self._router is None or self._router[0] != gen:
            self._router = (gen, self._make_router(mem))
        return self._router[1]

    def routes(self, question: str) -> list[str]:
        """The bank items ``question`` is answered under (the best one, and when it is a
        chunk of a long text, that text's other chunks that match); [] for any other memory."""
        return self.router().routes(question) if self.is_bank else []

    @contextmanager
    def answering(self, question: str) -> Iterator[list[str]]:
        """Within the block the model answers ``question`` as the memory does: a bank under
        the items the question routes to (see :func:`routed`), yielding their ids; a merged
        memory (or none) with the weights as they stand, yielding []."""
        if not self.is_bank:
            yield []
            return
        with routed(self.model, self.attached(), self.router(), question) as items:
            yield items

    def answer_all(self, bm: BaseModel, questions: list[str]) -> list[str]:
        """Greedy answers to ``questions`` as the memory gives them: a bank's one at a time,
        each under its own routes; otherwise in one batch."""
        if not self.is_bank:
            return bm.answer_batch([bm.prompt(q) for q in questions])
        out = []
        for q in questions:
            with self.answering(q):
                out.append(bm.answer(q))
        return out

    # -- export ------------------------------------------------------------------------------------
    def export_merged(self, path: str | Path, tokenizer: PreTrainedTokenizerBase) -> Path:
        """The model with the memory (and any injected adapter) merged in, as a plain
        transformers model folder. A bank has no one merged model: refused."""
        self.attached().check_mergeable()
        save = getattr(self.model, "save_pretrained", None)
        if save is None:
            raise MemoryError_(f"{type(self.model).__name__} is not a transformers model: it cannot be saved as one")
        p = Path(path)
        save(str(p))
        tokenizer.save_pretrained(str(p))
        return p

    def export_peft(self, path: str | Path, base_model_path: str = "") -> Path:
        """The memory as one peft LoRA adapter (an exact SVD factorisation of its total); a
        bank as one adapter per item, a shared one and its routes (``Memory.export_bank``).
        Injected adapters are not part of the memory and are not exported."""
        mem = self.attached()
        if self.is_bank:  # no single adapter: one per item, and their routes
            return mem.export_bank(path, base_model_path)
        return mem.as_adapter().save(path, base_model_path)

    # -- inside ------------------------------------------------------------------------------------
    def _injected_sum(self, bias_held: bool) -> Dense:
        if bias_held not in self._injected:
            self._injected[bias_held] = _summed(self._adapters, bias_held)
        return self._injected[bias_held]

    def _capture(self, layers: dict[str, int]) -> None:
        """Keep W0 of every (target, layer) not held yet: the first time this owner writes a
        weight, it still is the base model's."""
        for t, n in layers.items():
            for i in range(n):
                if (t, i) not in self._w0:
                    self._w0[(t, i)] = target_weight(self.model, i, t).detach().clone()


def _summed(adapters: list[Adapter], bias_held: bool) -> Dense:
    """The adapters' deltas ``scale * B @ A`` summed per target, in float32, in injection
    order, with the hypernetwork's context-independent bias counted once: a hypernetwork
    adapter carries it as its last ``meta['bias_rank']`` ranks (the same in every adapter of
    one hypernetwork, see ``Adapter.parts``), and a memory adds it with its first item. So
    the first adapter that carries it keeps it, unless ``bias_held`` (the memory holds it
    already), and every other adapter adds its document ranks alone. Counted twice, the bias
    costs a stored biography a quarter of its answers (embedded model)."""
    out: Dense = {}
    for ad in adapters:
        rb = int(ad.meta.get("bias_rank", 0))
        drop = rb if bias_held else 0
        bias_held = bias_held or rb > 0
        for t, (A, B) in ad.factors.items():
            keep = A.shape[-2] - drop
            d = torch.stack([ad.scale * (B[i, :, :keep].float() @ A[i, :keep].float()) for i in range(A.shape[-3])])
            out[t] = d if t not in out else out[t] + d
    return out


__all__ = ["RouterFactory", "Weights", "routed"]
