"""`reverie bench qa --model smollm2`: a real model reading real passages.

Held-out SQuAD-derived passages (see :mod:`reverie.world.passages`); each condition answers
the dataset's questions greedily and is scored against the accepted answers with ROUGE-L F1
(the ``rouge-score`` package, best over the accepted answers), exact match and token F1:
no context, the passage in context, bm25s top-1 retrieval over every passage of both
splits (about 9 700), gradient context distillation (on a subset: it is slow) and the
hypernetwork. ``relative_qa`` = injection ROUGE-L over full-context ROUGE-L;
``relative_gain`` = (injection - none) / (full - none), the share of what reading the
passage adds that injection keeps (a small model answers many questions partly from the
question's own words, which ``relative_qa`` counts as success).
"""

from __future__ import annotations

import functools
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reverie.base.metrics import exact_match, token_f1
from reverie.base.model import BaseModel, Generation
from reverie.errors import DataUnavailable
from reverie.eval.bench_qa import forward_time, retrieve
from reverie.hypernet.injectors import DistillInjector, HyperInjector
from reverie.hypernet.qa import ask_injected
from reverie.utils import progress
from reverie.world.passages import Passage, load


@dataclass
class Row:
    """One question about one passage (``person`` is the passage id, as ask_injected keys)."""

    person: str
    question: str
    answers: list[str]


@functools.cache
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(pred: str, golds: list[str]) -> float:
    return max(_scorer().score(g, pred)["rougeL"].fmeasure for g in golds)


def scores(preds: list[str], rows: list[Row], name: str) -> dict[str, float]:
    n = max(len(rows), 1)
    return {f"rougeL_{name}": round(sum(rouge_l(p, r.answers) for p, r in zip(preds, rows, strict=True)) / n, 4),
            f"em_{name}": round(sum(max(exact_match(p, g) for g in r.answers) for p, r in zip(preds, rows, strict=True)) / n, 4),
            f"f1_{name}": round(sum(max(token_f1(p, g) for g in r.answers) for p, r in zip(preds, rows, strict=True)) / n, 4)}


def passage_of_tokens(bm: BaseModel, passages: list[Passage], n_tokens: int) -> str:
    """Consecutive held-out passages joined and cut to ``n_tokens`` tokens."""
    ids: list[int] = []
    for p in passages:
        ids += bm.tokenizer.encode(p.text + "\n", add_special_tokens=False)
        if len(ids) >= n_tokens:
            break
    return str(bm.tokenizer.decode(ids[:n_tokens]))


def timing_passage(bm: BaseModel, fallback: Path, n_tokens: int = 512) -> tuple[str, str]:
    """(text, its source): ``n_tokens`` tokens of held-out test passages, as bench qa times
    injection on; where the package index does not offer them, of held-out Wikipedia
    articles (gensim's test dump); where neither can be had, of ``fallback``'s text (the
    timing scripts pass the README: only the length matters to a timing)."""
    from reverie.world import wiki

    try:
        return passage_of_tokens(bm, load("test"), n_tokens), "held-out test passages"
    except DataUnavailable:
        pass
    try:
        return passage_of_tokens(bm, wiki.load("test"), n_tokens), "held-out Wikipedia articles"
    except DataUnavailable:
        return passage_of_tokens(bm, [Passage("", "", "", fallback.read_text())], n_tokens), fallback.name


def run(bm: BaseModel, inj: HyperInjector, seed: int = 0, n_passages: int = 100, per_passage: int = 2,
        n_cd: int = 5, cd_steps: int = 300, partial: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    """The benchmark; ``partial`` receives the figures so far after each phase (distillation
    of SmolLM2 takes tens of minutes per passage on a 2-core CPU)."""
    test = load("test")
    r = random.Random(seed)
    chosen = r.sample(test, min(n_passages, len(test)))
    rows = [Row(p.id, q, a) for p in chosen for q, a in r.sample(p.qas, min(per_passage, len(p.qas)))]
    text = {p.id: p.text for p in chosen}
    gen = Generation(max_new_tokens=24, batch_size=16)
    out: dict[str, Any] = {"split": "test (held-out SQuAD v1.1 dev articles)", "n_passages": len(chosen),
                           "n_questions": len(rows)}
    with progress() as bar:
        task = bar.add_task("bench qa (real)", total=6)
        out |= scores(bm.answer_batch([bm.prompt(x.question) for x in rows], gen), rows, "none")
        full = bm.answer_batch([bm.prompt(x.question, text[x.person]) for x in rows], gen)
        out |= scores(full, rows, "full")
        bar.advance(task)
        if partial is not None:
            partial(out)
        store = [p.text for p in load("train")] + [p.text for p in test]
        got = retrieve([x.question for x in rows], store)
        out |= scores(bm.answer_batch([bm.prompt(x.question, c) for x, c in zip(rows, got, strict=True)], gen), rows, "rag")
        out["rag_store_size"] = len(store)
        out["rag_hit"] = round(sum(c == text[x.person] for x, c in zip(rows, got, strict=True)) / len(rows), 4)
        bar.advance(task)
        if partial is not None:
            partial(out)
        adapters = dict(zip(text, inj.inject_many(list(text.values())), strict=True))
        injected = ask_injected(bm, rows, adapters, gen)
        out |= scores(injected, rows, "inject")
        # Agreement with the model's own full-context answer (the training target).
        out["rougeL_inject_vs_full"] = round(statistics.mean(rouge_l(a, [b]) for a, b in zip(injected, full, strict=True)), 4)
        out["relative_qa"] = round(out["rougeL_inject"] / max(out["rougeL_full"], 1e-9), 4)
        gain = out["rougeL_full"] - out["rougeL_none"]
        out["relative_gain"] = round((out["rougeL_inject"] - out["rougeL_none"]) / gain, 4) if gain > 0 else None
        bar.advance(task)
        if partial is not None:
            partial(out)
        # Locality: other passages' questions, answered with and without an unrelated adapter.
        # One question per passage (its first: a passage may have fewer than per_passage),
        # asked under the next passage's adapter.
        ids = list(text)
        after = dict(zip(ids, ids[1:] + ids[:1], strict=True))  # each passage's next one, cyclically
        first: dict[str, Row] = {}
        for x in rows:
            first.setdefault(x.person, x)
        other = [Row(after[pid], x.question, x.answers) for pid, x in first.items()]
        plain = bm.answer_batch([bm.prompt(x.question) for x in other], gen)
        moved = ask_injected(bm, other, adapters, gen)
        out["locality"] = round(sum(a == b for a, b in zip(plain, moved, strict=True)) / len(other), 4)
        # Answers here are sentences: one changed token breaks equality, so the ROUGE-L
        # overlap between the two answers is reported too.
        out["locality_rougeL"] = round(statistics.mean(rouge_l(b, [a]) for a, b in zip(plain, moved, strict=True)), 4)
        out["n_locality"] = len(other)
        bar.advance(task)
        if partial is not None:
            partial(out)
        # Cost on a 512-token passage: injection against one forward pass over it.
        long = passage_of_tokens(bm, test, 512)
        t_inj, t_fwd = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            inj.inject(long)
            t_inj.append(time.perf_counter() - t0)
            t_fwd.append(forward_time(bm, long, reps=3))
        out["inject_s_512"] = round(statistics.median(t_inj), 4)
        # The forward pass is float32 (what answers run in); injection reads in read_dtype.
        out["read_dtype"] = inj.reading_name
        out["forward_s_512"] = round(statistics.median(t_fwd), 4)
        out["inject_ratio"] = round(statistics.median(a / b for a, b in zip(t_inj, t_fwd, strict=True)), 3)
        ad = next(iter(adapters.values()))
        out["adapter_bytes"] = ad.nbytes
        bar.advance(task)
        if partial is not None:
            partial(out)
        if n_cd > 0:
            cd = DistillInjector(bm, rank=inj.hyper.cfg.rank, steps=cd_steps, targets=tuple(inj.hyper.cfg.targets))
            sub = ids[:n_cd]
            t_cd, cd_ads = [], {}
            for pid in sub:
                # Probes: every dataset question about the passage (the evaluated ones among
                # them), answered by the model itself with the passage in context.
                qs = [q for p in chosen if p.id == pid for q, _ in p.qas]
                t0 = time.perf_counter()
                cd_ads[pid] = cd.inject(text[pid], qs)
                t_cd.append(time.perf_counter() - t0)
            sub_rows = [x for x in rows if x.person in cd_ads]
            out |= scores(ask_injected(bm, sub_rows, cd_ads, gen), sub_rows, "cd")
            out |= scores(ask_injected(bm, sub_rows, {k: adapters[k] for k in cd_ads}, gen), sub_rows, "inject_on_cd_subset")
            out |= scores([full[rows.index(x)] for x in sub_rows], sub_rows, "full_on_cd_subset")
            out["n_cd_questions"] = len(sub_rows)
            out["cd_steps"] = cd_steps
            out["cd_s_per_passage"] = round(statistics.median(t_cd), 2)
        bar.advance(task)
        if partial is not None:
            partial(out)
    return out
