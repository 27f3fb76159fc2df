"""`reverie eval base`: what the base model knows and how well it reads.

* ``acc_full``: held-out people, their biography in context (training question templates);
* ``acc_none``: the same questions with no context (should be near chance);
* ``acc_closed``: base-population questions, closed book (knowledge from pretraining);
* ``acc_full_heldout_templates``: in context, question templates never used in training;
* ``heldout_per_template``: in context, every held-out template asked about every held-out
  person, accuracy per template (which forms of question the model cannot read);
* ``abstain_none``: share of the no-context answers that are "I don't know" (a model trained
  with ``--p-unknown`` abstains about people it never read about instead of guessing).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from reverie.base.metrics import abstain_rate, exact_match
from reverie.base.model import BaseModel
from reverie.base.qa import ask, documents, sample_questions, score
from reverie.world import Person, World, WorldConfig


def evaluate(bm: BaseModel, seed: int = 0, n_held_out: int = 100, n_base: int = 500,
             world_seed: int = 0) -> dict[str, Any]:
    """Measure the four accuracies; every question is answered greedily (exact match)."""
    t0 = time.time()
    world = World(WorldConfig(seed=world_seed))
    people = world.held_out[:n_held_out]
    docs = documents(world, people, seed)
    qas = sample_questions(world, people, 6, seed)
    held_tpl = sample_questions(world, people, 6, seed, heldout=True)
    base_qas = sample_questions(world, world.base[:n_base], 6, seed)
    out: dict[str, Any] = {}
    out |= score(ask(bm, qas, docs), qas).as_dict("acc_full")
    none = ask(bm, qas)
    out |= score(none, qas).as_dict("acc_none")
    out["abstain_none"] = round(abstain_rate(none), 4)
    out |= score(ask(bm, base_qas), base_qas).as_dict("acc_closed")
    out |= score(ask(bm, held_tpl, docs), held_tpl).as_dict("acc_full_heldout_templates")
    out["heldout_per_template"] = per_template(bm, world, people, docs)
    out["eval_s"] = round(time.time() - t0, 1)
    out["n_base_people"] = len(world.base[:n_base])
    out["n_held_out_people"] = len(people)
    return out


def per_template(bm: BaseModel, world: World, people: list[Person], docs: dict[str, str]) -> dict[str, float]:
    """In-context accuracy of each held-out template over ``people`` (every template asked
    about every person)."""
    qas = [q for p in people for q in world.questions(p, heldout=True)]
    hits: dict[str, list[float]] = defaultdict(list)
    for a, q in zip(ask(bm, qas, docs), qas, strict=True):
        hits[q.template].append(exact_match(a, q.answer))
    return {t: round(sum(h) / len(h), 4) for t, h in hits.items()}
