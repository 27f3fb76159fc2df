"""`reverie bench qa`: QA on held-out people after injection, against every reference.

acc_none / acc_full / acc_rag (bm25s top-1 over a store of >= 1000 documents that holds the
target) / acc_cd (gradient context distillation, on a subset: it is slow) / acc_inject,
relative_qa, generalization (held-out question templates after injection), locality of
one injection, inject_ratio, distillation time over injection time, adapter bytes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from reverie.base.metrics import abstain_rate
from reverie.base.model import BaseModel
from reverie.base.qa import ask, documents, sample_questions, score
from reverie.errors import InputError
from reverie.hypernet.injectors import DistillInjector, HyperInjector
from reverie.hypernet.qa import ask_injected
from reverie.utils import progress
from reverie.world import QA, World, WorldConfig


def retrieve(questions: list[str], store: list[str]) -> list[str]:
    """The top-1 bm25s text of ``store`` for each question."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(store, stopwords="en", show_progress=False), show_progress=False)
    res, _ = retriever.retrieve(bm25s.tokenize(questions, stopwords="en", show_progress=False), k=1, show_progress=False)
    return [store[int(res[i, 0])] for i in range(len(questions))]


def rag_docs(world: World, qas, docs: dict[str, str], store_size: int, seed: int) -> dict[str, str]:
    """For each question, the top-1 bm25s document from a store that includes the target."""
    people = world.held_out[: max(store_size, len(docs))]
    store = documents(world, people, seed + 1) | docs  # the targets' own documents are in the store
    got = retrieve([q.question for q in qas], list(store.values()))
    return {f"{q.person}\x00{q.question}": g for q, g in zip(qas, got, strict=True)}


def forward_time(bm: BaseModel, text: str, reps: int = 5) -> float:
    """Seconds of one forward pass (hidden states kept, as injection reads them) over what
    the hypernetwork reads of ``text``."""
    ids = torch.tensor([bm.encode(bm.format.document(text))[: bm.max_length]])
    with torch.no_grad():
        bm.model(ids, output_hidden_states=True)
        t0 = time.perf_counter()
        for _ in range(reps):
            bm.model(ids, output_hidden_states=True)
    return (time.perf_counter() - t0) / reps


def injected_set(world: World, n_people: int, seed: int,
                 held_out_from: int = 0) -> tuple[dict[str, str], list[QA], list[QA]]:
    """What :func:`run` injects and asks: one document per held-out person (from
    ``held_out_from``), six questions each in the training templates, and six in the held-out
    templates (``generalization``)."""
    people = world.held_out[held_out_from : held_out_from + n_people]
    return (documents(world, people, seed), sample_questions(world, people, 6, seed),
            sample_questions(world, people, 6, seed, heldout=True))


def locality_set(world: World, n_people: int, seed: int, held_out_from: int = 0,
                 base_from: int = 0) -> tuple[list[QA], dict[str, str]]:
    """The locality prompts of :func:`run`: one question about each of ``n_people`` base people
    and ``n_people`` strangers (held-out people never injected), and for each prompt's person
    the name of the benchmark person whose adapter it is asked under (fixed by position)."""
    people = world.held_out[held_out_from : held_out_from + n_people]
    strangers = world.held_out[held_out_from + n_people : held_out_from + 2 * n_people]
    other = sample_questions(world, world.base[base_from : base_from + n_people] + strangers, 1, seed)
    return other, {q.person: people[i % n_people].name for i, q in enumerate(other)}


def run(bm: BaseModel, hyper_inj: HyperInjector, seed: int = 0, n_people: int = 60,
        n_cd: int = 10, cd_steps: int = 300, store_size: int = 1000, held_out_from: int = 0,
        base_from: int = 0) -> dict[str, Any]:
    """``held_out_from`` / ``base_from``: where the people start in the held-out and base
    populations (0: the benchmark's own people). The locality pairs are fixed by position, the
    same at every seed, so another slice of people is the way to a second, independent sample."""
    world = World(WorldConfig(seed=0))
    if held_out_from < 0 or held_out_from + 2 * n_people > len(world.held_out):
        raise InputError(f"--held-out-from {held_out_from} with --n-people {n_people} needs held-out people "
                         f"{held_out_from}..{held_out_from + 2 * n_people - 1}; the world has {len(world.held_out)}")
    if base_from < 0 or base_from + n_people > len(world.base):
        raise InputError(f"--base-from {base_from} with --n-people {n_people} needs base people "
                         f"{base_from}..{base_from + n_people - 1}; the world has {len(world.base)}")
    people = world.held_out[held_out_from : held_out_from + n_people]
    docs, qas, held = injected_set(world, n_people, seed, held_out_from)
    out: dict[str, Any] = {"n_people": n_people, "n_questions": len(qas)}
    if held_out_from or base_from:
        out |= {"held_out_from": held_out_from, "base_from": base_from}
    with progress() as bar:
        task = bar.add_task("bench qa", total=6)
        closed = ask(bm, qas)
        out |= score(closed, qas).as_dict("acc_none")
        # How often the model says it does not know (a base trained with --p-unknown
        # abstains about strangers instead of guessing).
        out["abstain_none"] = round(abstain_rate(closed), 4)
        out |= score(ask(bm, qas, docs), qas).as_dict("acc_full")
        bar.advance(task)
        rd = rag_docs(world, qas, docs, store_size, seed)
        prompts = [bm.prompt(q.question, rd[f"{q.person}\x00{q.question}"]) for q in qas]
        out |= score(bm.answer_batch(prompts), qas).as_dict("acc_rag")
        out["rag_store_size"] = max(store_size, n_people)
        bar.advance(task)
        adapters = dict(zip(docs, hyper_inj.inject_many(list(docs.values())), strict=True))
        out |= score(ask_injected(bm, qas, adapters), qas).as_dict("acc_inject")
        out |= score(ask_injected(bm, held, adapters), held).as_dict("generalization")
        out |= score(ask(bm, held, docs), held).as_dict("acc_full_heldout_templates")
        out["relative_qa"] = round(out["acc_inject"] / max(out["acc_full"], 1e-9), 4)
        bar.advance(task)
        # Locality of one injection: questions about *other* people (base population and
        # other held-out people) must get the same greedy answer as without the adapter.
        other, injected = locality_set(world, n_people, seed, held_out_from, base_from)
        plain = ask(bm, other)
        shifted = {q.person: adapters[injected[q.person]] for q in other}
        changed = ask_injected(bm, other, shifted)
        same = [a == b for a, b in zip(plain, changed, strict=True)]
        out["locality"] = round(sum(same) / len(other), 4)
        out["n_locality"] = len(other)
        # The two halves apart: answers the base model knows (closed book) and its guesses
        # about people it never saw, which any change to the weights tends to flip.
        known = {p.name for p in world.base[base_from : base_from + n_people]}
        for name, keep in (("base", True), ("unknown", False)):
            sel = [s for s, q in zip(same, other, strict=True) if (q.person in known) == keep]
            out[f"locality_{name}"] = round(sum(sel) / max(len(sel), 1), 4)
        # The context-independent bias adapter alone on the same prompts: it is the same for
        # every document, so what it flips no document's keys can be blamed for.
        only = next(iter(adapters.values())).bias_only()
        if only is not None:
            alone = [a == b for a, b in zip(plain, ask_injected(bm, other, dict.fromkeys(shifted, only)), strict=True)]
            out["locality_bias_alone"] = round(sum(alone) / len(other), 4)
            out["n_flips_also_bias_alone"] = sum(not s and not b for s, b in zip(same, alone, strict=True))
        bar.advance(task)
        # Timing: one document at a time, against one forward pass over the same text.
        sample = list(docs.values())[:20]
        t_inj, t_fwd = [], []
        for text in sample:
            hyper_inj.inject(text)
            t0 = time.perf_counter()
            hyper_inj.inject(text)
            t_inj.append(time.perf_counter() - t0)
            t_fwd.append(forward_time(bm, text))
        out["inject_s"] = round(statistics.median(t_inj), 5)
        out["read_dtype"] = hyper_inj.reading_name
        out["forward_s"] = round(statistics.median(t_fwd), 5)
        out["inject_ratio"] = round(statistics.median(a / b for a, b in zip(t_inj, t_fwd, strict=True)), 3)
        ad = next(iter(adapters.values()))
        out["adapter_bytes"] = ad.nbytes
        out["adapter_rank"] = ad.rank
        bar.advance(task)
        # Gradient context distillation on a subset (it is slow): probes are all training
        # templates about the person, answered by the model itself with the document in context.
        if n_cd > 0:
            cd = DistillInjector(bm, rank=hyper_inj.hyper.cfg.rank, steps=cd_steps, targets=tuple(hyper_inj.hyper.cfg.targets))
            sub = people[:n_cd]
            t_cd = []
            cd_ads = {}
            for p in sub:
                t0 = time.perf_counter()
                cd_ads[p.name] = cd.inject(docs[p.name], [q.question for q in world.questions(p)])
                t_cd.append(time.perf_counter() - t0)
            sub_q = [q for q in qas if q.person in cd_ads]
            sub_h = [q for q in held if q.person in cd_ads]
            out |= score(ask_injected(bm, sub_q, cd_ads), sub_q).as_dict("acc_cd")
            out |= score(ask_injected(bm, sub_h, cd_ads), sub_h).as_dict("generalization_cd")
            out |= score(ask_injected(bm, sub_q, {n: adapters[n] for n in cd_ads}), sub_q).as_dict("acc_inject_on_cd_subset")
            out["cd_steps"] = cd_steps
            out["cd_s_per_doc"] = round(statistics.median(t_cd), 3)
            out["cd_time_over_inject_time"] = round(statistics.median(t_cd) / out["inject_s"], 1)
        bar.advance(task)
    return out
