"""`reverie bench learn`: does a model learn what a user writes?

On the hand-written dev sets (:mod:`reverie.eval.devsets`: biographies, Wikipedia
paragraphs, personal notes; the test half by default), through the user's own path: a
:class:`~reverie.learner.Learner` with a bank memory reads every item, sleeps once, and is
asked each item's questions with the text gone from its context. Reported per set:

- ``acc_none`` / ``acc_full`` / ``acc_rag``: the base model with no context, with the item
  in context, with the bm25s top-1 of the stored items in context;
- ``acc_inject``: one hypernetwork injection per item (where the model has a hypernetwork);
- ``acc_sleep``: after read + sleep, answered through the memory (routed);
  ``acc_single``: each item's own adapter applied directly (what routing can reach);
  ``relative_sleep_<set>`` = ``acc_sleep`` / ``acc_full``;

and over all sets: ``locality`` (general-knowledge questions the base model gets right,
and questions about the other half's items, which are not stored: the answer with the
memory equals the base model's), ``update_success`` / ``stale_rate`` (each biography's
job change read and slept on later: the new employer named / the old one still named),
``sleep_s_per_item``, ``answer_ratio`` (answer time with the memory over the base model's,
the same questions, interleaved in one run), and ``retention_<N>`` (accuracy on the
reported items' questions once ``N`` items, filled up from the other half, share the memory).
A chat model's answers are sentences: correct when the answer (or an accepted
alternative) is in the reply (``devsets.correct``); ROUGE-L is reported beside.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from reverie.base.model import BaseModel, Generation
from reverie.eval.devsets import Item, Question, correct, load

SETS = ("bios", "wiki", "notes")


@dataclass
class LearnBench:
    """What ``reverie bench learn`` measures (the saved record of a run)."""

    sets: tuple[str, ...] = SETS
    """Dev sets whose items are learned."""
    split: str = "test"
    """Half reported: ``test`` (never tuned on) or ``dev``."""
    limit: int | None = None
    """Items per set (None: the whole half)."""
    fill: int = 0
    """Stored items in all for ``retention_<fill>``: the reported items, then items of the
    other half, then Wikipedia paragraphs no dev set uses, up to this many (0: no retention run)."""
    updates: bool = True
    """Read and sleep on each biography's job change, then ask about it."""
    seed: int = 0
    """Recorded with the run (the benchmark draws nothing at random)."""


def _rouge(reply: str, q: Question) -> float:
    from reverie.eval.bench_real import rouge_l

    return rouge_l(reply, [q.a, *q.alts])


def _score(replies: list[str], qs: list[Question]) -> tuple[float, float]:
    n = max(len(qs), 1)
    return (round(sum(correct(r, q) for r, q in zip(replies, qs, strict=True)) / n, 4),
            round(sum(_rouge(r, q) for r, q in zip(replies, qs, strict=True)) / n, 4))


def run(model: str | None, cfg: LearnBench, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The benchmark on ``model`` (a name such as ``smollm2``, a path, or None: the
    embedded world model); ``progress`` gets one line per phase."""
    from reverie.eval.bench_qa import retrieve
    from reverie.learner import Learner

    items = {s: load(s, cfg.split)[: cfg.limit] for s in cfg.sets}
    others = {s: load(s, "dev" if cfg.split == "test" else "test") for s in cfg.sets}
    general = [q for it in load("general", "all") for q in it.questions]
    gen = Generation(max_new_tokens=32, batch_size=16)
    out: dict[str, Any] = {"config": asdict(cfg), "n_items": {s: len(v) for s, v in items.items()}}
    named = str(model) if model is not None else "world"
    with tempfile.TemporaryDirectory() as tmp:
        injector = "hyper" if model is None else "learn"
        learner = Learner.load(model, injector=injector, memory=f"{tmp}/mem", strategy="bank")
        bm = learner.bm
        qs = {s: [q for it in v for q in it.questions] for s, v in items.items()}
        ctx = {s: [it.text for it in v for _ in it.questions] for s, v in items.items()}
        store = [it.text for v in items.values() for it in v]
        progress("base model: no context, full context, retrieval")
        for s in cfg.sets:
            none = bm.answer_batch([bm.prompt(q.q) for q in qs[s]], gen)
            full = bm.answer_batch([bm.prompt(q.q, c) for q, c in zip(qs[s], ctx[s], strict=True)], gen)
            got = retrieve([q.q for q in qs[s]], store)
            rag = bm.answer_batch([bm.prompt(q.q, c) for q, c in zip(qs[s], got, strict=True)], gen)
            for name, replies in (("none", none), ("full", full), ("rag", rag)):
                out[f"acc_{name}_{s}"], out[f"rougeL_{name}_{s}"] = _score(replies, qs[s])
        # Locality prompts: general knowledge the base model answers right, and the other
        # half's questions (their items are never stored in this run unless ``fill`` asks).
        g_base = bm.answer_batch([bm.prompt(q.q) for q in general], gen)
        keep = [(q, a) for q, a in zip(general, g_base, strict=True) if correct(a, q)]
        out["acc_closed_general"] = round(len(keep) / max(len(general), 1), 4)
        unrelated = [q.q for q, _ in keep] + [q.q for s in cfg.sets for it in others[s][:4] for q in it.questions[:2]]
        # Asked the way they are asked after sleep (one at a time, the same generation): a
        # batch's left padding or another answer length would count as a change.
        base_unrelated = [learner.ask(q, working=False, gen=gen) for q in unrelated]

        if model is not None and _has_hypernet(model):
            progress("one hypernetwork injection per item")
            out |= _inject_figures(bm, model, items, gen)

        progress(f"read + sleep: {sum(len(v) for v in items.values())} items")
        for v in items.values():
            for it in v:
                learner.read(it.text)
        t0 = time.perf_counter()
        rep = learner.sleep()
        sleep_s = time.perf_counter() - t0
        n_items = sum(len(v) for v in items.values())
        out["sleep_s_per_item"] = round(sleep_s / max(n_items, 1), 2)
        out["sleep_report"] = {k: rep[k] for k in ("consolidated", "refused", "discarded") if k in rep}
        ids = dict(zip([it.id for v in items.values() for it in v], rep.get("items", []), strict=False))
        progress("asking through the memory")
        for s in cfg.sets:
            routed = [learner.ask(q.q, working=False, gen=gen) for q in qs[s]]
            out[f"acc_sleep_{s}"], out[f"rougeL_sleep_{s}"] = _score(routed, qs[s])
            single = _single(learner, items[s], ids, gen)
            out[f"acc_single_{s}"], _ = _score(single, qs[s])
            full_acc = out[f"acc_full_{s}"]
            out[f"relative_sleep_{s}"] = round(out[f"acc_sleep_{s}"] / full_acc, 4) if full_acc else None
            out[f"routed_right_{s}"] = round(statistics.mean(
                learner.route(q.q) == ids.get(it.id) for it in items[s] for q in it.questions), 4)
        after = [learner.ask(q, working=False, gen=gen) for q in unrelated]
        out["locality"] = round(sum(a == b for a, b in zip(after, base_unrelated, strict=True)) / max(len(unrelated), 1), 4)
        out["n_locality"] = len(unrelated)
        out |= _answer_ratio(learner, [q.q for s in cfg.sets for q in qs[s]][:24])

        if cfg.updates and "bios" in items:
            progress("knowledge updates: each biography's job change")
            bios = [it for it in items["bios"] if it.update is not None and it.update_text]
            for it in bios:
                learner.read(str(it.update_text))
            learner.sleep()
            ups = [it.update for it in bios if it.update is not None]
            replies = [learner.ask(q.q, working=False, gen=gen) for q in ups]
            out["update_success"] = round(statistics.mean(correct(r, q) for r, q in zip(replies, ups, strict=True)), 4) if ups else None
            stale = [Question(q.q, it.update_old or "", ()) for q, it in zip(ups, bios, strict=True)]
            out["stale_rate"] = round(statistics.mean(correct(r, q) and bool(q.a) for r, q in zip(replies, stale, strict=True)), 4) if ups else None
        if cfg.fill:
            out |= _retention(learner, items, others, cfg.fill, gen, progress)
        learner.close()
    out["model"] = named
    return out


def _has_hypernet(model: str) -> bool:
    from reverie.learner import hypernet_dir

    return hypernet_dir(model).exists()


def _inject_figures(bm: BaseModel, model: str, items: dict[str, list[Item]], gen: Generation) -> dict[str, Any]:
    """``acc_inject_<set>``: each item's hypernetwork adapter applied alone, no text in context."""
    from reverie.hypernet.injectors import HyperInjector
    from reverie.hypernet.lora import applied
    from reverie.hypernet.store import load_hypernet
    from reverie.learner import hypernet_dir

    # On the benchmark's own copy of the model: the hypernetwork reads, nothing is merged.
    inj = HyperInjector(bm, load_hypernet(hypernet_dir(model), bm), read_dtype="auto")
    out = {}
    for s, v in items.items():
        ads = inj.inject_many([it.text for it in v])
        replies = []
        for it, ad in zip(v, ads, strict=True):
            with applied(bm.model, ad.factors, ad.scale):
                replies += bm.answer_batch([bm.prompt(q.q) for q in it.questions], gen)
        out[f"acc_inject_{s}"], _ = _score(replies, [q for it in v for q in it.questions])
    return out


def _single(learner: Any, items: list[Item], ids: dict[str, str], gen: Generation) -> list[str]:
    """Each item's questions under its own stored adapter alone (no router)."""
    from reverie.hypernet.lora import applied

    bm, mem = learner.bm, learner.memory
    out: list[str] = []
    for it in items:
        prompts = [bm.prompt(q.q) for q in it.questions]
        if it.id not in ids:  # refused or not stored: the weights as they are
            out += bm.answer_batch(prompts, gen)
            continue
        with applied(bm.model, mem.factors(ids[it.id], slab=True), 1.0):
            out += bm.answer_batch(prompts, gen)
    return out


def _answer_ratio(learner: Any, questions: list[str]) -> dict[str, float]:
    """Answer time through the memory over the base model's, on the same questions,
    alternating so that both see the same machine."""
    bm = learner.bm
    t_mem, t_base = [], []
    for q in questions:
        t0 = time.perf_counter()
        learner.ask(q, working=False)
        t_mem.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bm.answer(q)
        t_base.append(time.perf_counter() - t0)
    return {"answer_ratio": round(sum(t_mem) / max(sum(t_base), 1e-9), 3), "n_answer_ratio": len(questions)}


def _retention(learner: Any, items: dict[str, list[Item]], others: dict[str, list[Item]], fill: int,
               gen: Generation, progress: Callable[[str], None]) -> dict[str, Any]:
    """Fill the memory with the other half's items, then Wikipedia paragraphs no dev set
    uses (:func:`devsets.filler`), up to ``fill`` in all; then ask the reported items'
    questions again."""
    from reverie.eval.devsets import filler

    have = sum(len(v) for v in items.values())
    extra = [it.text for s in others for it in others[s]][: max(fill - have, 0)]
    extra += filler(max(fill - have - len(extra), 0)) if fill > have + len(extra) else []
    progress(f"retention: {len(extra)} more items, {have + len(extra)} in all")
    for text in extra:
        learner.read(text)
    if extra:
        learner.sleep()
    qs = [q for v in items.values() for it in v for q in it.questions]
    replies = [learner.ask(q.q, working=False, gen=gen) for q in qs]
    acc, _ = _score(replies, qs)
    return {f"retention_{have + len(extra)}": acc}


def markdown(r: dict[str, Any]) -> str:
    """The per-set table of a run."""
    sets = [s for s in SETS if f"acc_full_{s}" in r]
    cols = ["none", "full", "rag", "inject", "single", "sleep"]
    rows = [f"# bench learn ({r.get('model')})", "", f"`{r.get('command', '')}` (seed {r.get('seed')})", "",
            "| set | " + " | ".join(f"acc_{c}" for c in cols) + " | relative_sleep |",
            "| --- |" + " --- |" * (len(cols) + 1)]
    for s in sets:
        rows.append(f"| {s} | " + " | ".join(str(r.get(f"acc_{c}_{s}", "")) for c in cols) + f" | {r.get(f'relative_sleep_{s}')} |")
    rows += ["", "| metric | value |", "| --- | --- |"]
    for k in ("locality", "n_locality", "update_success", "stale_rate", "sleep_s_per_item", "answer_ratio"):
        if k in r:
            rows.append(f"| {k} | {r[k]} |")
    rows += [f"| {k} | {v} |" for k, v in r.items() if k.startswith("retention_")]
    return "\n".join(rows) + "\n"


__all__ = ["SETS", "LearnBench", "markdown", "run"]
