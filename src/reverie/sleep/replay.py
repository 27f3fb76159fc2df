"""Replay: re-distil question-answer pairs into the consolidated weights.

The rows are probes the model itself wrote when it consolidated earlier items (see
:mod:`reverie.sleep.probe`), plus anchors: questions about the base population answered by
the base model with no memory, so the replay pulls unrelated answers back to the base
model's instead of only adding knowledge. A rank-r LoRA on the memory's targets is fitted
by AdamW on the cross-entropy of those answers (the one fit loop,
:func:`reverie.hypernet.fit.fit_rows`), on top of the weights as they are (base + memory),
and the result is merged into the memory like any other item.
"""

from __future__ import annotations

import torch

from reverie.base.model import BaseModel
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.fit import FitConfig, fit_rows
from reverie.hypernet.lora import applied, concat


def fit(bm: BaseModel, rows: list[tuple[str, str]], targets: tuple[str, ...], rank: int = 8, steps: int = 60,
        lr: float = 5e-3, alpha: float = 8.0, seed: int = 0) -> Adapter:
    """A LoRA on every layer that makes ``bm`` (as its weights are now) answer each question
    with its answer: :func:`reverie.hypernet.fit.fit_rows` for a fixed number of steps, in
    float32 (replay judges what it keeps by the guard, not by a loss threshold)."""
    cfg = FitConfig(layers=None, rank=rank, alpha=alpha, targets=targets, steps=steps, lr=lr, stop_loss=0.0,
                    dtype="float32", seed=seed)
    ad = fit_rows(bm, rows, cfg)
    ad.meta = {k: ad.meta[k] for k in ("rows", "steps", "final_loss", "fit_s")} | {"injector": "replay"}
    return ad


@torch.no_grad()
def _answers_under(bm: BaseModel, factors: dict, questions: list[str]) -> list[str]:
    with applied(bm.model, factors, 1.0):
        return bm.answer_batch([bm.prompt(q) for q in questions])


def repair(bm: BaseModel, ad: Adapter, probes: list, rank: int = 4, steps: int = 40, lr: float = 5e-3,
           phrasings: int = 3, seed: int = 0, with_bias: bool = False) -> tuple[Adapter, dict]:
    """Verify an item's adapter on its own probes and, where it does not answer a fact as the
    model did with the text in context, fit a correction (a rank-``rank`` LoRA on the item's
    probes, on top of the adapter) and append its ranks to the item's document ranks.

    The hypernetwork writes in one pass and misses some facts (it never learned birth dates);
    sleep has time to check and fix what the fast write missed. Returns the adapter to
    store (the input if every fact held) and what was found. ``with_bias``: the adapter's
    bias ranks are not in the weights yet (a memory adds them with its first item), so
    check and fit with them applied, as the item will be answered."""
    doc, bias = ad.parts()
    under = concat([doc, bias]) if with_bias and bias is not None else doc
    facts: dict[str, list] = {}
    for p in probes:
        facts.setdefault(p.key, []).append(p)
    if not facts:
        return ad, {"facts": 0, "failed": 0}
    first = [ps[0] for ps in facts.values()]
    got = _answers_under(bm, under, [p.question for p in first])
    failed = [p.key for p, a in zip(first, got, strict=True) if a != p.answer]
    info: dict = {"facts": len(facts), "failed": len(failed)}
    if not failed:
        return ad, info
    rows = [(p.question, p.answer) for ps in facts.values() for p in ps[:phrasings]]  # its good facts too: keep them
    with applied(bm.model, under, 1.0):
        corr = fit(bm, rows, tuple(doc), rank, steps, lr, seed=seed)
    fix, _ = corr.parts()  # its scale folded into B, like the item's own ranks
    after = _answers_under(bm, concat([under, fix]), [p.question for p in first])
    info |= {"failed_after": sum(a != p.answer for p, a in zip(first, after, strict=True)), "fit_s": corr.meta["fit_s"]}
    fac = concat([doc, fix] + ([bias] if bias is not None else []))  # the bias stays last: Adapter.parts finds it there
    return Adapter(fac, 1.0, ad.layer_prefix, dict(ad.meta) | {"repaired": len(failed)}), info


__all__ = ["fit", "repair"]
