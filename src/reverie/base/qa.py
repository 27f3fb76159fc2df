"""Questions about the synthetic world put to the base model: sampling them, asking them
greedily (with or without a document in context) and scoring the answers (normalised exact
match and token F1, :mod:`reverie.base.metrics`). Asking under injected adapters is
:func:`reverie.hypernet.qa.ask_injected`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from reverie.base.metrics import exact_match, token_f1
from reverie.base.model import BaseModel, Generation
from reverie.world import QA, Person, World
from reverie.world.generator import rng


@dataclass
class Score:
    """Accuracy (exact match), token F1 and per-attribute accuracy over some questions."""

    acc: float
    f1: float
    n: int
    per_attribute: dict[str, float]

    def as_dict(self, prefix: str) -> dict[str, float | int | dict[str, float]]:
        """``prefix`` is the accuracy; F1 is ``acc`` -> ``f1`` in it (``acc_inject`` ->
        ``f1_inject``), or ``f1_`` before a prefix without ``acc`` (``generalization`` ->
        ``f1_generalization``): the F1 key must never be the accuracy's own."""
        f1 = prefix.replace("acc", "f1", 1) if "acc" in prefix else f"f1_{prefix}"
        return {prefix: round(self.acc, 4), f1: round(self.f1, 4),
                f"n_{prefix}": self.n, f"{prefix}_per_attribute": self.per_attribute}


def score(preds: list[str], qas: list[QA]) -> Score:
    em = [exact_match(p, q.answer) for p, q in zip(preds, qas, strict=True)]
    f1 = [token_f1(p, q.answer) for p, q in zip(preds, qas, strict=True)]
    by: dict[str, list[float]] = defaultdict(list)
    for e, q in zip(em, qas, strict=True):
        by[q.attribute].append(e)
    n = max(len(em), 1)
    return Score(sum(em) / n, sum(f1) / n, len(em),
                 {a: round(sum(v) / len(v), 4) for a, v in sorted(by.items())})


def sample_questions(world: World, people: list[Person], per_person: int, seed: int,
                     heldout: bool = False) -> list[QA]:
    """``per_person`` questions per person over distinct attributes, templates drawn by seed."""
    r = rng(seed, "questions", str(heldout))
    out = []
    for p in people:
        for a in r.sample(list(p.attrs), min(per_person, len(p.attrs))):
            out.append(world.question(p, a, r, "heldout" if heldout else "train"))
    return out


def ask(bm: BaseModel, qas: list[QA], docs: dict[str, str] | None = None,
        gen: Generation | None = None) -> list[str]:
    """Greedy answers; ``docs`` maps a person to the document put in context."""
    prompts = [bm.prompt(q.question, None if docs is None else docs[q.person]) for q in qas]
    return bm.answer_batch(prompts, gen)


def documents(world: World, people: list[Person], seed: int) -> dict[str, str]:
    """One seeded biography per person."""
    r = rng(seed, "documents")
    return {p.name: world.biography(p, r) for p in people}


def skill_validation(world: World, n: int, seed: int) -> list[Person]:
    """Fresh people for monitoring training (never held-out: those are for benchmarks)."""
    it = world.skill_people(10_000_019 + seed)
    return [next(it) for _ in range(n)]
