"""Heuristic selectors and the oracle, over one night of :class:`reverie.policy.env.Night`.

Every heuristic but ``random`` first drops exact duplicates (of a stored item or of an
earlier observation tonight), as the ``first`` selector of ``sleep()`` does, then keeps
``budget`` observations:

- ``first``: reading order (the default selector of ``sleep()``);
- ``random``: uniformly at random (seeded), duplicates and all;
- ``recency``: the last read;
- ``surprise``: the highest base-model loss (what the model knows least);
- ``repeated``: the people mentioned most often tonight, one observation per person (its
  longest), texts about no one last;
- ``oracle``: knows the future questions and the answer tables: each night it adds, one
  at a time, the observation that most increases the number of *all remaining* questions
  answered right, and stops when nothing helps (greedy, so an upper reference rather than
  the exact optimum over whole episodes).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from reverie.policy.env import Night
from reverie.policy.features import FEATURES

Select = Callable[[Night], list[int]]
_F = {n: i for i, n in enumerate(FEATURES)}


def _fresh(n: Night) -> list[int]:
    return [i for i in range(len(n.items)) if n.X[i, _F["duplicate"]] == 0]


def first(n: Night) -> list[int]:
    return _fresh(n)[: n.budget]


def recency(n: Night) -> list[int]:
    return _fresh(n)[::-1][: n.budget]


def surprise(n: Night) -> list[int]:
    return sorted(_fresh(n), key=lambda i: (-float(n.X[i, _F["surprise"]]), i))[: n.budget]


def repeated(n: Night) -> list[int]:
    cand = [i for i in _fresh(n) if n.X[i, _F["entity_rank"]] == 0]
    return sorted(cand, key=lambda i: (float(n.X[i, _F["no_entity"]]), -float(n.X[i, _F["mentions"]]), i))[: n.budget]


def make_random(seed: int) -> Select:
    r = random.Random(seed)

    def pick(n: Night) -> list[int]:
        return sorted(r.sample(range(len(n.items)), min(n.budget, len(n.items))))

    return pick


def oracle(n: Night) -> list[int]:
    t = n.tables
    future = [q for qs in t.questions[n.night :] for q in qs]
    stored = n.stored.copy()
    chosen: list[int] = []
    now = t.score(stored, future)
    while len(chosen) < n.budget:
        best, gain = None, 0
        for pos, x in enumerate(n.items):
            if stored[x] or pos in chosen:
                continue
            stored[x] = True
            g = t.score(stored, future) - now
            stored[x] = False
            if g > gain:
                best, gain = pos, g
        if best is None:
            break
        chosen.append(best)
        stored[n.items[best]] = True
        now += gain
    return chosen


def scorer_select(scores_fn: Callable[[np.ndarray], np.ndarray]) -> Select:
    """A selector from a scoring function over feature rows (the learned policy)."""
    from reverie.policy.env import top_scores

    def pick(n: Night) -> list[int]:
        return top_scores(scores_fn(n.X), len(n.items), n.budget)

    return pick


HEURISTICS: dict[str, Callable[[int], Select]] = {
    "first": lambda seed: first,
    "random": make_random,
    "recency": lambda seed: recency,
    "surprise": lambda seed: surprise,
    "repeated": lambda seed: repeated,
}
"""Name -> factory(seed) -> selector; with ``oracle`` these are the benchmark's baselines."""


__all__ = ["HEURISTICS", "Select", "first", "make_random", "oracle", "recency", "repeated", "scorer_select", "surprise"]
