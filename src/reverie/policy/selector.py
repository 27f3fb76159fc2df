"""The trained policy inside ``sleep()``: the ``learned`` selector, registered into the
sleep cycle's selectors (``reverie.sleep.cycle.SELECTORS``) when this module is imported
(``reverie.learner`` imports it), so that the sleep cycle needs nothing of this package.

It computes the same features as the training environment (:mod:`reverie.policy.features`)
from what a sleep has: the buffered texts, the memory's ledger excerpts and hashes, and
the base model's loss on each text (measured with the memory detached, as in training),
then keeps the ``budget`` observations the shipped network scores highest among those
scoring above zero. It never keeps an exact duplicate. Without a budget there is no
choice to make: it keeps every observation but exact duplicates, in reading order, as the
``first`` selector does (the policy was trained to choose under a budget, and a sleep
without one must not lose what was read); the same when the budget does not bind (no more
fresh observations than the budget), a case training hardly ever saw.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from reverie.memory import Memory
from reverie.policy import features as F
from reverie.policy.net import ItemScorer, load
from reverie.sleep.buffer import Observation
from reverie.sleep.cycle import Selector, Sleeper, register_selector


@lru_cache(maxsize=4)
def _policy(path: str | None) -> ItemScorer:
    return load(path)


@lru_cache(maxsize=1)
def _embedded():
    from reverie.base.model import BaseModel

    return BaseModel.load()


def ledger_excerpts(mem: Any) -> list[str]:
    """Excerpts of the consolidated observations (replay deltas are not observations)."""
    if mem is None:
        return []
    return [e.get("excerpt", "") for e in mem.ledger()
            if e.get("event") == "add" and e.get("kind") != "replay" and e.get("excerpt")]


def base_surprise(learner: Sleeper | None, texts: list[str]) -> list[float]:
    """The base model's loss on each text: the learner's model with its base weights (no
    memory, no injected adapter), or the embedded model when there is no learner."""
    if learner is None:
        return F.surprise(_embedded(), texts)
    with learner.weights.base():
        return F.surprise(learner.bm, texts)


def choose(texts: list[str], shas: list[str], budget: int | None, known: set[str], learner: Sleeper | None = None,
           mem: Any = None, path: str | None = None) -> tuple[list[int], dict[int, str]]:
    """(kept positions in reading order, {dropped position: why})."""
    if not texts:
        return [], {}
    seen, fresh = set(known), []
    for i, sha in enumerate(shas):
        if sha not in seen:
            fresh.append(i)
        seen.add(sha)
    if budget is None or len(fresh) <= budget:
        return fresh, {i: "duplicate" for i in range(len(texts)) if i not in fresh}
    X = F.item_features(texts, shas, base_surprise(learner, texts), ledger_excerpts(mem), known, budget)
    scores = _policy(path).score(X).numpy().astype(np.float64)  # (N,)
    dup = X[:, F.FEATURES.index("duplicate")] > 0
    order = [int(i) for i in np.argsort(-scores, kind="stable") if not dup[i] and scores[i] > 0]
    keep = sorted(order[:budget])
    why = {i: "duplicate" if dup[i] else ("policy: over budget" if scores[i] > 0 else "policy: not worth keeping")
           for i in range(len(texts)) if i not in keep}
    return keep, why


@register_selector("learned")
class LearnedSelector(Selector):
    """The consolidation policy trained by reinforcement learning (``reverie train policy``;
    see ``reverie.policy``): scores each observation from its features (the base model's
    surprise, novelty against the ledger, mentions, duplicates, recency, length) with the
    shipped network and keeps the ``budget`` best among those scoring above zero. Without a
    budget, or one that does not bind, there is nothing to choose: every observation but
    exact duplicates is kept."""

    learner: Sleeper | None = None
    memory: Memory | None = None

    def bind(self, learner: Sleeper, mem: Memory) -> None:
        self.learner, self.memory = learner, mem

    def select(self, obs: list[Observation], budget: int | None, known: set[str]
               ) -> tuple[list[Observation], list[tuple[Observation, str]]]:
        keep, why = choose([o.text for o in obs], [o.sha256 for o in obs], budget, known, self.learner, self.memory)
        return [obs[i] for i in keep], [(obs[i], w) for i, w in sorted(why.items())]


__all__ = ["LearnedSelector", "base_surprise", "choose", "ledger_excerpts"]
