"""Merge strategies: how a batch of new deltas joins the long-term weight memory.

A new strategy is one class with the :func:`register` decorator. Each turns the batch's
low-rank deltas into what is added to the memory's dense total, and says whether each
item's contribution stays separable (then ``forget`` is exact). TIES and DARE come from
``peft.utils.merge_utils`` as they are; they merge a batch at once (what they are for),
so their per-item contributions are not separable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft.utils import merge_utils

from reverie.utils import registrar

Lowrank = dict[str, tuple[torch.Tensor, torch.Tensor]]  # target -> (A (L, r, d_in), B (L, d_out, r)), scale folded into B
Dense = dict[str, torch.Tensor]  # target -> (L, d_out, d_in)

MERGES: dict[str, type[MergeStrategy]] = {}


register = registrar(MERGES)


def dense(f: Lowrank) -> Dense:
    return {t: B @ A for t, (A, B) in f.items()}  # (L, d_out, r) @ (L, r, d_in)


@dataclass
class Applied:
    """What a batch adds to the memory."""

    total: Dense
    """Added to the dense total."""
    items: list[Lowrank] | None
    """Each item's exact contribution (low-rank), or None when they are not separable."""


class MergeStrategy:
    """Base: plain addition. ``state`` holds tensors the strategy carries between batches
    (persisted with the memory's total)."""

    name = "?"
    merged = True
    """Whether items go into the total (False: a bank, whose items are applied per question)."""

    def __init__(self, **kw: float):
        self.kw = kw
        self.state: dict[str, torch.Tensor] = {}

    def apply(self, total: Dense, batch: list[Lowrank]) -> Applied:
        return Applied(_sum([dense(f) for f in batch]), batch)

    def after(self, total: Dense, n_items: int) -> Dense | None:
        """Called after each batch: may return a replacement total (e.g. re-compression)."""
        return None

    def rebuild(self, items: list[Lowrank]) -> None:  # noqa: B027 - optional hook
        """Rebuild ``state`` from the items as applied, in order (a memory whose total file
        was lost: ``Memory`` repair); the default carries no state worth rebuilding."""


def _sum(ds: list[Dense]) -> Dense:
    return {t: torch.stack([d[t] for d in ds]).sum(0) for t in ds[0]}


@register("add")
class Add(MergeStrategy):
    """Plain addition of every delta."""


@register("scaled")
class Scaled(MergeStrategy):
    """Addition with each delta scaled by ``alpha`` (default 0.5)."""

    def apply(self, total: Dense, batch: list[Lowrank]) -> Applied:
        a = float(self.kw.get("alpha", 0.5))
        items = [{t: (A, a * B) for t, (A, B) in f.items()} for f in batch]
        return Applied(_sum([dense(f) for f in items]), items)


@register("orthogonal")
class Orthogonal(MergeStrategy):
    """Project each delta's input directions (rows of A) away from the span of earlier
    items' rows (O-LoRA / AlphaEdit-like), so a new delta does not respond to the keys
    an older one writes on. The protected subspace holds at most ``max_frac`` of d_in
    directions (default 0.5); past that the oldest directions are released."""

    def apply(self, total: Dense, batch: list[Lowrank]) -> Applied:
        items = []
        for f in batch:
            out = {}
            for t, (A, B) in f.items():
                Q = self.state.get(t)  # (L, d_in, k) orthonormal columns
                if Q is not None:
                    A = A - (A @ Q) @ Q.transpose(1, 2)  # (L, r, d_in)
                out[t] = (A, B)
                self._grow(t, A)
            items.append(out)
        return Applied(_sum([dense(f) for f in items]), items)

    def rebuild(self, items: list[Lowrank]) -> None:
        self.state = {}
        for f in items:
            for t, (A, _) in f.items():
                self._grow(t, A.float())

    def _grow(self, t: str, A: torch.Tensor) -> None:
        L, _, d_in = A.shape
        cap = max(1, int(float(self.kw.get("max_frac", 0.5)) * d_in))
        Q = self.state.get(t)
        cols = A.transpose(1, 2)  # (L, d_in, r)
        M = cols if Q is None else torch.cat([Q, cols], 2)
        q, rr = torch.linalg.qr(M)  # Gram-Schmidt in order: old directions first
        keep = rr.diagonal(dim1=1, dim2=2).abs().amax(0) > 1e-6 * rr.abs().amax()  # drop dependent columns
        q = q[:, :, keep]
        self.state[t] = q[:, :, -cap:].contiguous()


@register("ties")
class Ties(MergeStrategy):
    """TIES (trim to ``density``, elect signs, disjoint mean) over each batch, through
    ``peft.utils.merge_utils.ties``, times TIES's scaling ``lam`` (default 1); the merged
    batch is added to the total."""

    def apply(self, total: Dense, batch: list[Lowrank]) -> Applied:
        ds = [dense(f) for f in batch]
        w = torch.ones(len(ds))
        den = float(self.kw.get("density", 0.5))
        if len(ds) == 1:  # TIES of one delta is its magnitude trim
            return Applied({t: merge_utils.prune(ds[0][t], den, "magnitude") for t in ds[0]}, None)
        lam = float(self.kw.get("lam", 1.0))
        return Applied({t: lam * merge_utils.ties([d[t] for d in ds], w, den) for t in ds[0]}, None)


@register("dare")
class Dare(MergeStrategy):
    """DARE (random drop to ``density``, rescale) over each batch, through
    ``peft.utils.merge_utils.dare_linear``."""

    def apply(self, total: Dense, batch: list[Lowrank]) -> Applied:
        ds = [dense(f) for f in batch]
        den = float(self.kw.get("density", 0.5))
        torch.manual_seed(int(self.kw.get("seed", 0)) + int(self.state.get("_n", torch.zeros(())).item()))
        self.state["_n"] = self.state.get("_n", torch.zeros(())) + 1
        return Applied({t: merge_utils.dare_linear([d[t] for d in ds], torch.ones(len(ds)), den) for t in ds[0]}, None)


@register("svd")
class Svd(MergeStrategy):
    """Addition, then every ``period`` items (default 50) the total is re-compressed to its
    best rank-``budget`` approximation per layer (default 64): memory stays a fixed size."""

    def after(self, total: Dense, n_items: int) -> Dense | None:
        period = int(self.kw.get("period", 50))
        if n_items == 0 or n_items % period:
            return None
        k = int(self.kw.get("budget", 64))
        out = {}
        for t, W in total.items():
            U, S, Vh = torch.linalg.svd(W, full_matrices=False)  # (L, d_out, m), (L, m), (L, m, d_in)
            out[t] = (U[..., :k] * S[:, None, :k]) @ Vh[:, :k]
        return out


@register("bank")
class Bank(MergeStrategy):
    """No merge: each item stays a separate adapter, chosen per question by routing on a
    document key (WISE-like side memory). The total stays zero; see ``Memory.route``."""

    merged = False

    def apply(self, total: Dense, batch: list[Lowrank]) -> Applied:
        return Applied({t: torch.zeros_like(W) for t, W in total.items()}, batch)
