"""Autoregressive QA scoring: greedy answers, normalised exact match and token F1."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reverie.base.model import BaseModel, Generation
from reverie.eval.metrics import exact_match, token_f1
from reverie.world import QA, Person, World
from reverie.world.generator import _rng


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
    r = _rng(seed, "questions", str(heldout))
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
    r = _rng(seed, "documents")
    return {p.name: world.biography(p, r) for p in people}


def skill_validation(world: World, n: int, seed: int) -> list[Person]:
    """Fresh people for monitoring training (never held-out: those are for benchmarks)."""
    it = world.skill_people(10_000_019 + seed)
    return [next(it) for _ in range(n)]


def shuffle(xs: list, seed: int) -> list:
    xs = list(xs)
    random.Random(seed).shuffle(xs)
    return xs


class Asked(Protocol):
    """What :func:`ask_injected` needs of a question: its text and whose adapter answers it."""

    @property
    def person(self) -> str: ...

    @property
    def question(self) -> str: ...


def ask_injected(bm: BaseModel, qas: Sequence[Asked], adapters: dict, gen: Generation | None = None,
                 contexts: Sequence[str | None] | None = None) -> list[str]:
    """Greedy answers, each question under the adapter of ``adapters[qa.person]`` (rows of one
    generation batch may carry different adapters, applied per row); no context unless
    ``contexts`` gives one per question."""
    from reverie.hypernet.lora import applied

    gen = gen or Generation()
    keys = [q.person for q in qas]
    out: list[str] = []
    for i in range(0, len(qas), gen.batch_size):
        chunk = qas[i : i + gen.batch_size]
        fac = _stacked([adapters[k] for k in keys[i : i + gen.batch_size]])
        with applied(bm.model, fac, 1.0):
            ctx = [None] * len(chunk) if contexts is None else contexts[i : i + gen.batch_size]
            out += bm.answer_batch([bm.prompt(q.question, c) for q, c in zip(chunk, ctx, strict=True)],
                                   Generation(gen.max_new_tokens, len(chunk)))
    return out


def _stacked(ads: list) -> dict:
    """Per-row factors for a batch of adapters (scale folded into B; ranks zero-padded to the
    largest, since a long document's combined adapter may carry more ranks)."""
    import torch

    rmax = max(a.rank for a in ads)
    out = {}
    for t in ads[0].factors:
        As, Bs = [], []
        for a in ads:
            A, B = a.factors[t]
            pad = rmax - A.shape[-2]
            As.append(torch.nn.functional.pad(A, (0, 0, 0, pad)))  # (L, rmax, d_in)
            Bs.append(torch.nn.functional.pad(B * a.scale, (0, pad)))  # (L, d_out, rmax)
        out[t] = (torch.stack(As), torch.stack(Bs))
    return out
