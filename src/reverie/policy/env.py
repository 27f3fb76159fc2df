"""The consolidation decision as a Gymnasium environment over policy streams.

One episode is one stream of ``nights`` nights, with an empty memory at the start. Each
step is a night: the observation is the night's buffer as feature rows
(``(max_items, N_FEATURES)``, :mod:`reverie.policy.features`; padding rows are zero), the
action one score per row (``Box(-10, 10, (max_items,))``): the night consolidates the
``budget`` highest-scoring observations among those scoring above zero (a policy may keep
fewer). The reward is the number of the next day's questions answered right from the
weights alone, divided by the episode's question count (so an episode's return is its
future-question accuracy), minus ``cost`` per consolidated observation.

Consolidation and evaluation are the real injection and the real greedy answers, looked
up in the stream's tables (:mod:`reverie.policy.tables`: the bank strategy, no guard, no
replay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from reverie.policy.features import EXCERPT, N_FEATURES, item_features, pad
from reverie.policy.tables import StreamTables


@dataclass
class Night:
    """What a selector may look at on one night (the oracle also reads ``tables``)."""

    tables: StreamTables
    night: int
    items: list[int]
    """Tonight's buffer: text indices in reading order."""
    stored: np.ndarray
    """(X,) bool: texts in the memory."""
    ledger: list[str]
    """Excerpts of the stored texts, in the order they were stored."""
    X: np.ndarray
    """(len(items), N_FEATURES) feature rows."""
    budget: int


class Episode:
    """One stream lived night by night; shared by the environment and the benchmark."""

    def __init__(self, tables: StreamTables, budget: int, cost: float = 0.0):
        self.t, self.budget, self.cost = tables, budget, cost
        self.night = 0
        self.stored = np.zeros(len(tables.texts), dtype=bool)
        self.order: list[int] = []
        self.correct = 0
        self.consolidated = 0

    @property
    def done(self) -> bool:
        return self.night >= len(self.t.nights)

    def current(self) -> Night:
        t = self.t
        items = t.nights[self.night]
        ledger = [t.texts[i][:EXCERPT] for i in self.order]
        X = item_features([t.texts[i] for i in items], [t.shas[i] for i in items], [float(t.surprise[i]) for i in items],
                          ledger, {t.shas[i] for i in self.order}, self.budget)
        return Night(t, self.night, items, self.stored.copy(), ledger, X, self.budget)

    def step(self, chosen: list[int]) -> tuple[float, int]:
        """Consolidate buffer positions ``chosen`` (at most ``budget``); returns (reward,
        questions answered right the next day)."""
        if len(chosen) > self.budget:
            raise ValueError(f"{len(chosen)} observations chosen over a budget of {self.budget}")
        items = self.t.nights[self.night]
        new = 0
        for pos in chosen:
            x = items[pos]
            new += 1
            if not self.stored[x]:  # a duplicate text is consolidated again: same adapter, no change
                self.stored[x] = True
                self.order.append(x)
        right = self.t.score(self.stored, self.t.questions[self.night])
        self.correct += right
        self.consolidated += new
        self.night += 1
        return right / max(1, self.t.n_questions) - self.cost * new, right

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.t.n_questions)


def top_scores(scores: np.ndarray, n: int, budget: int) -> list[int]:
    """The ``budget`` highest of the first ``n`` scores among those above zero."""
    s = np.asarray(scores[:n], dtype=np.float64)
    idx = [int(i) for i in np.argsort(-s, kind="stable") if s[i] > 0]
    return idx[:budget]


class ConsolidationEnv(gym.Env):
    """Gymnasium environment: choose what each night consolidates (see the module notes).

    ``tables``: the streams episodes are drawn from (uniformly, by the env's seed), or
    ``options={"stream": i}`` in ``reset`` to pick one; ``budget``: one, or several to
    draw from per episode (``options={"budget": b}`` picks one)."""

    metadata: dict = {"render_modes": []}

    def __init__(self, tables: list[StreamTables], budget: int | tuple[int, ...] = 3, cost: float = 0.002,
                 max_items: int = 16):
        if not tables:
            raise ValueError("ConsolidationEnv needs at least one stream's tables")
        self.budgets = (budget,) if isinstance(budget, int) else tuple(budget)
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"budget must be at least 1, got {budget}")
        self.tables, self.cost, self.max_items = tables, cost, max_items
        self.budget = self.budgets[0]
        self.observation_space = gym.spaces.Box(0.0, 8.0, (max_items, N_FEATURES), dtype=np.float32)
        self.action_space = gym.spaces.Box(-10.0, 10.0, (max_items,), dtype=np.float32)
        self.ep: Episode | None = None
        self._night: Night | None = None

    def _obs(self) -> np.ndarray:
        assert self.ep is not None
        self._night = self.ep.current()
        return pad(self._night.X, self.max_items)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        i = int((options or {}).get("stream", self.np_random.integers(len(self.tables))))
        # Several budgets: one drawn per episode, so one policy serves every budget (the
        # ``fill`` feature tells it how selective a night must be).
        self.budget = int((options or {}).get("budget", self.budgets[int(self.np_random.integers(len(self.budgets)))]))
        self.ep = Episode(self.tables[i], self.budget, self.cost)
        return self._obs(), {"stream": i, "seed": self.tables[i].seed, "budget": self.budget}

    def step(self, action):
        assert self.ep is not None and self._night is not None, "call reset() first"
        n = min(len(self._night.items), self.max_items)
        chosen = top_scores(np.asarray(action), n, self.budget)
        reward, right = self.ep.step(chosen)
        info = {"chosen": chosen, "right": right, "accuracy": self.ep.accuracy}
        if self.ep.done:
            return np.zeros(self.observation_space.shape, dtype=np.float32), float(reward), True, False, info
        return self._obs(), float(reward), False, False, info


def run(tables: StreamTables, select: Callable[[Night], list[int]], budget: int) -> dict:
    """Live through a stream with one selector; its future-question accuracy."""
    ep = Episode(tables, budget)
    while not ep.done:
        ep.step(select(ep.current()))
    return {"accuracy": ep.accuracy, "consolidated": ep.consolidated, "correct": ep.correct,
            "questions": tables.n_questions}


__all__ = ["ConsolidationEnv", "Episode", "Night", "run", "top_scores"]
