"""`reverie bench route`: which bank router sends a user's questions to the right item, and
leaves the rest alone? Routing only: no model runs, so it takes seconds.

On a half of the hand-written dev sets (:mod:`reverie.eval.devsets`), every other item of
each set is stored (its routing key and the probe questions the text prober writes for it,
as a sleep stores them) and the rest are held back. Reported per router and set:

- ``right_<set>``: the stored items' own questions routed to their item;
- ``abstain_<set>``: the held-back items' questions routed to no item (their answers stay
  the base model's);
- ``abstain_general``: general-knowledge questions routed to no item.

Routers: ``key`` and ``text`` from the registry (:mod:`reverie.memory.route`); ``bm25``
(bm25s over each item's probe questions and key, always its best item: bm25 scores have no
absolute scale to abstain on); ``text+bm25`` (the text router, and where it abstains, the
bm25 best item when its score reaches ``bm25_threshold``); and, given a model, ``hidden``:
the item whose text's mean hidden state at ``hidden_layer`` is nearest (cosine) to the
question's, both centred on the general questions' mean (uncentred, every pair of texts is
at a cosine of about 0.99), always its best item.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from reverie.eval.devsets import Item, load
from reverie.memory.route import ROUTERS, key_phrases
from reverie.sleep.probe import ABOUT_KEY, TextProber

SETS = ("bios", "wiki", "notes")
ROUTES = ("key", "text", "bm25", "text+bm25", "hidden")


@dataclass
class RouteBench:
    """What ``reverie bench route`` measures (the saved record of a run)."""

    sets: tuple[str, ...] = SETS
    """Dev sets whose items are stored and held back."""
    split: str = "dev"
    """Half whose items are stored and held back: ``dev`` (tuned on) or ``test``."""
    bm25_threshold: float = 5.0
    """Least bm25 score at which ``text+bm25`` routes a question the text router leaves."""
    model: str | None = None
    """A model for the ``hidden`` router (None: not measured)."""
    hidden_layer: int = 24
    """Layer whose hidden states key the ``hidden`` router."""
    seed: int = 0
    """Recorded with the run (the benchmark draws nothing at random)."""


def _probe_questions(text: str) -> tuple[list[str], list[str]]:
    """(the probe questions a sleep stores for ``text``, the names its about-probes ask of)."""
    p = TextProber()
    asked = p.questions(text)
    return [q for q, _ in asked] + [q for q, _, _ in p.facts(text)], [k[len(ABOUT_KEY) :] for _, k in asked if k.startswith(ABOUT_KEY)]


def routers(stored: list[Item], threshold: float) -> dict[str, Callable[[str], str | None]]:
    """Each router over the stored items, as question -> item id or None."""
    import bm25s

    out: dict[str, Callable[[str], str | None]] = {}
    probes = [_probe_questions(it.text) for it in stored]
    for kind in ("key", "text"):
        r = ROUTERS[kind]()
        for it, (qs, names) in zip(stored, probes, strict=True):
            r.add(it.id, key_phrases(it.text), questions=qs, names=names)
        out[kind] = r.route
    docs = [" ".join(qs + key_phrases(it.text)) for it, (qs, _) in zip(stored, probes, strict=True)]
    index = bm25s.BM25()
    index.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)

    def best(q: str) -> tuple[str, float]:
        got, scores = index.retrieve(bm25s.tokenize([q], stopwords="en", show_progress=False), k=1, show_progress=False)
        return stored[int(got[0][0])].id, float(scores[0][0])

    def hybrid(q: str) -> str | None:
        routed = out["text"](q)
        if routed is not None:
            return routed
        item, score = best(q)
        return item if score >= threshold else None

    out["bm25"] = lambda q: best(q)[0]
    out["text+bm25"] = hybrid
    return out


def hidden_router(model: str, stored: list[Item], general: list[str], layer: int) -> Callable[[str], str | None]:
    """The ``hidden`` router (see the module notes) on ``model``."""
    import torch

    from reverie.base.model import BaseModel

    bm = BaseModel.load(model)

    @torch.no_grad()
    def mean_states(texts: list[str]) -> torch.Tensor:
        out = []
        for t in texts:
            ids = torch.tensor([bm.encode(t)[-bm.max_length :]])
            h = bm.model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]  # (T, d)
            out.append(h.float()[1:].mean(0))  # the first token's state is an outlier in every text
        return torch.stack(out)  # (N, d)

    centre = mean_states(general).mean(0)  # (d,)
    keys = torch.nn.functional.normalize(mean_states([it.text for it in stored]) - centre, dim=1)  # (items, d)

    def route(q: str) -> str | None:
        v = torch.nn.functional.normalize(mean_states([q])[0] - centre, dim=0)  # (d,)
        return stored[int((keys @ v).argmax())].id

    return route


def run(cfg: RouteBench, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Every router's figures on ``cfg.split``."""
    halves = {s: load(s, cfg.split) for s in cfg.sets}
    stored = {s: v[0::2] for s, v in halves.items()}
    held = {s: v[1::2] for s, v in halves.items()}
    general = [q.q for it in load("general", "all") for q in it.questions]
    progress(f"{sum(map(len, stored.values()))} items stored, {sum(map(len, held.values()))} held back")
    out: dict[str, Any] = {"config": asdict(cfg), "n_stored": {s: len(v) for s, v in stored.items()}}
    every = [it for v in stored.values() for it in v]
    routes = routers(every, cfg.bm25_threshold)
    if cfg.model is not None:
        progress(f"hidden states of {cfg.model}")
        routes["hidden"] = hidden_router(cfg.model, every, general, cfg.hidden_layer)
    for name, route in routes.items():
        for s in cfg.sets:
            out[f"right_{s}_{name}"] = round(statistics.mean(route(q.q) == it.id for it in stored[s] for q in it.questions), 4)
            out[f"abstain_{s}_{name}"] = round(statistics.mean(route(q.q) is None for it in held[s] for q in it.questions), 4)
        out[f"abstain_general_{name}"] = round(statistics.mean(route(q) is None for q in general), 4)
    return out


def markdown(r: dict[str, Any]) -> str:
    """One row per router."""
    sets = [s for s in SETS if f"right_{s}_text" in r]
    cols = [f"right_{s}" for s in sets] + [f"abstain_{s}" for s in sets] + ["abstain_general"]
    rows = ["# bench route", "", f"`{r.get('command', '')}` (seed {r.get('seed')})", "",
            "| router | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    rows += [f"| {n} | " + " | ".join(str(r.get(f"{c}_{n}", "")) for c in cols) + " |" for n in ROUTES if f"right_{sets[0]}_{n}" in r]
    return "\n".join(rows) + "\n"


__all__ = ["ROUTES", "RouteBench", "markdown", "routers", "run"]
