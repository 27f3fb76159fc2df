"""Everything deterministic about one stream, computed once with the real model: the
injections, the routing scores and the greedy answers.

Consolidation in the policy environment is the memory's ``bank`` strategy (the best
retention of ``reverie bench sequential``: no merge, each item stays its own hypernetwork adapter, and every
question is routed to the stored item whose key fires most on it, WISE-like; see
``reverie.memory.route.ActivationRouter``). No guard and no replay: an episode must cost
milliseconds for PPO to see thousands of nights on two CPU cores. Under the bank the
answer to a question depends only on *which* stored item it routes to, so for a stream
the whole evaluation is a table computed once, with the real model:

- every observation text is injected by the shipped hypernetwork (``HyperInjector``);
- ``sim[q, x]``: the routing score of question ``q`` on text ``x``'s adapter (the Router's
  cosine of the item's layer-0 key rows against the question's activations);
- ``correct[q, x]``: whether the greedy answer to ``q`` with ``x``'s adapter applied (no
  context, ``ask_injected``) matches the gold answer, for every pair whose score passes the
  routing threshold (others can never be routed there);
- ``correct_bias[q]`` / ``correct_base[q]``: the answer when nothing routes (the memory's
  shared bias rank only) and with an empty memory (the base model).

Given the set of stored texts, a question's answer is then a table look-up, exactly what
the model would answer (a test checks one night against live ``ask_injected`` calls).
Tables are cached on disk per stream (``.npz`` without pickles plus JSON).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from reverie.base.metrics import exact_match
from reverie.policy.features import surprise
from reverie.policy.stream import PolicyStream
from reverie.utils import atomic_write_text

THRESHOLD = 0.55
"""Routing threshold (the Router's default, between stored and unstored people's scores)."""

TABLES_VERSION = 2
"""Part of every cache key: raise it whenever ``_compute`` changes what a table holds, so a
cache written by older code is recomputed, never reused (the key otherwise covers only the
weights, the stream and the threshold)."""


@dataclass
class StreamTables:
    """One stream's observations, questions and answer tables (see the module notes)."""

    seed: int
    texts: list[str]
    """Distinct observation texts of the stream's nights."""
    shas: list[str]
    kinds: list[str]
    """Kind of each text's first appearance (bio, repeat, update, known, chatter, duplicate)."""
    surprise: np.ndarray
    """(X,) base-model loss per text."""
    nights: list[list[int]]
    """Per night, the buffer in reading order (indices into ``texts``)."""
    questions: list[list[int]]
    """Per night ``d``, the indices of the questions asked on day ``d + 1``."""
    sim: np.ndarray
    """(Q, X) routing score; below the threshold: -1."""
    correct: np.ndarray
    """(Q, X) int8: 1/0 where routable, -1 elsewhere."""
    correct_bias: np.ndarray
    """(Q,) int8: answer right when no stored item routes (memory not empty)."""
    correct_base: np.ndarray
    """(Q,) int8: answer right with an empty memory."""
    question_text: list[str]
    answers: list[str]
    """Gold answers (for the record)."""

    @property
    def n_questions(self) -> int:
        return sum(len(q) for q in self.questions)

    def score(self, stored: np.ndarray, qidx: list[int]) -> int:
        """Questions of ``qidx`` answered right from a memory holding the texts marked in
        ``stored`` (bool (X,))."""
        if not qidx:
            return 0
        if not stored.any():
            return int(self.correct_base[qidx].sum())
        S = np.where(stored[None, :], self.sim[qidx], -1.0)  # (q, X)
        best = S.argmax(1)
        routed = S[np.arange(len(qidx)), best] >= THRESHOLD
        right = np.where(routed, self.correct[qidx, best], self.correct_bias[qidx])
        return int(right.sum())


def build(learner, stream: PolicyStream, cache: Path | None = None) -> StreamTables:
    """Inject, route and answer everything of ``stream`` with the real model (or load the
    cached tables for this stream and model)."""
    key = _key(learner, stream)
    if cache is not None:
        hit = load(cache / key)
        if hit is not None:
            return hit
    t = _compute(learner, stream)
    if cache is not None:
        save(t, cache / key)
    return t


def _key(learner, stream: PolicyStream) -> str:
    from reverie.hypernet.model import fingerprint

    h = hashlib.sha256(json.dumps([asdict(stream.config), stream.seed, fingerprint(learner.bm.model), THRESHOLD, TABLES_VERSION],
                                  default=str).encode())
    for p in list(learner.injector.hyper.parameters())[:6]:  # which hypernetwork wrote the adapters
        h.update(p.detach().flatten()[:256].float().numpy().tobytes())
    return f"s{stream.seed}-{h.hexdigest()[:12]}"


@torch.no_grad()
def _compute(learner, stream: PolicyStream) -> StreamTables:
    from reverie.hypernet.qa import ask_injected
    from reverie.memory.route import ActivationRouter

    bm, inj = learner.bm, learner.injector
    texts: list[str] = []
    kinds: list[str] = []
    index: dict[str, int] = {}
    nights = []
    for day in stream.days[:-1]:
        row = []
        for o in day.observations:
            if o.text not in index:
                index[o.text] = len(texts)
                texts.append(o.text)
                kinds.append(o.kind)
            row.append(index[o.text])
        nights.append(row)
    qas = [q for day in stream.days[1:] for q in day.questions]
    qidx, n = [], 0
    for day in stream.days[1:]:
        qidx.append(list(range(n, n + len(day.questions))))
        n += len(day.questions)
    ads = inj.inject_many(texts)
    router = ActivationRouter(bm)
    for i, ad in enumerate(ads):
        doc, _ = ad.parts()  # the bank stores an item's document ranks; its key is their layer-0 rows
        router.add(str(i), [], doc)
    K = torch.cat(router.keys).float()  # (X * r, d_in)
    r = router.keys[0].shape[0]
    acts = [router._acts(q.question) for q in qas]  # each (T, d_in), unit rows
    sim = torch.stack([(K @ a.T).abs().amax(-1).view(-1, r).amax(-1) for a in acts]).numpy()  # (Q, X)
    sim = np.where(sim >= THRESHOLD, sim, -1.0).astype(np.float32)
    pairs = [(qi, x) for qi in range(len(qas)) for x in np.nonzero(sim[qi] >= THRESHOLD)[0].tolist()]
    correct = np.full(sim.shape, -1, dtype=np.int8)
    keyed = [replace(qas[qi], person=str(x)) for qi, x in pairs]
    preds = ask_injected(bm, keyed, {str(i): ad for i, ad in enumerate(ads)}) if pairs else []
    for (qi, x), p in zip(pairs, preds, strict=True):
        correct[qi, x] = exact_match(p, qas[qi].answer)
    base = bm.answer_batch([bm.prompt(q.question) for q in qas])
    only = ads[0].bias_only()  # None for an injector without a bias: the base model's answers stand
    pb = base if only is None else ask_injected(bm, [replace(q, person="bias") for q in qas], {"bias": only})
    return StreamTables(
        seed=stream.seed, texts=texts, shas=[hashlib.sha256(t.encode()).hexdigest() for t in texts], kinds=kinds,
        surprise=np.asarray(surprise(bm, texts), dtype=np.float32), nights=nights, questions=qidx, sim=sim,
        correct=correct, correct_bias=np.asarray([exact_match(p, q.answer) for p, q in zip(pb, qas, strict=True)], dtype=np.int8),
        correct_base=np.asarray([exact_match(p, q.answer) for p, q in zip(base, qas, strict=True)], dtype=np.int8),
        question_text=[q.question for q in qas], answers=[q.answer for q in qas])


_ARRAYS = ("surprise", "sim", "correct", "correct_bias", "correct_base")


def save(t: StreamTables, path: Path) -> None:
    """``path.npz`` (arrays, no pickles) and ``path.json`` (the rest), each written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **{k: getattr(t, k) for k in _ARRAYS})
    tmp.replace(path.with_suffix(".npz"))
    atomic_write_text(path.with_suffix(".json"), json.dumps(
        {k: v for k, v in asdict(t).items() if k not in _ARRAYS}))


def load(path: Path) -> StreamTables | None:
    if not (path.with_suffix(".npz").is_file() and path.with_suffix(".json").is_file()):
        return None
    try:
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in _ARRAYS}
        return StreamTables(**json.loads(path.with_suffix(".json").read_text()), **arrays)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache entry is recomputed


__all__ = ["THRESHOLD", "StreamTables", "build", "load", "save"]
