"""Issue 3, locality: which of `reverie bench qa`'s locality prompts one injection flips, and
what part of the adapter flips them.

For each SEED:N_PEOPLE[:HELD_OUT_FROM:BASE_FROM] argument it rebuilds the benchmark's locality set
(`bench_qa.locality_set`: one question about each of N base people and N strangers, each asked
under the adapter of a benchmark person), injects with the shipped hypernetwork and counts the
answers that change from the base model's under
- the whole adapter (what `bench qa` reports as locality),
- its context-independent bias ranks alone,
- its document ranks alone (the bias left out).
Each flip of the whole adapter is listed with the injected person; what the answer became
("I don't know", the injected person's own value for that attribute, or another value); the
base model's margin on its own answer (the least gap, over the answer's tokens, between the
answer token's logit and the best other); and how the adapter shifts the logit of the first
token of the base answer and of the adapted answer. The counts of locality prompts with a
margin under 2 and under 0.5 logits are printed too: those are the answers a small change
can tip.

The slice options are bench qa's `--held-out-from` and `--base-from`. MODEL=DIR measures another
base model and the hypernetwork exported beside it (as `reverie bench qa --model DIR`).

Usage: .venv/bin/python scripts/locality_flips.py 0:200 1:200 2:200   (about 2 minutes)
"""
import json
import os
import sys
from collections import Counter

import torch

from reverie.base.metrics import abstains
from reverie.base.qa import ask
from reverie.eval.bench_qa import injected_set, locality_set
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.lora import applied
from reverie.hypernet.qa import ask_injected
from reverie.learner import Learner
from reverie.world import World, WorldConfig

torch.set_num_threads(2)
learner = Learner.load(os.environ.get("MODEL") or None)
bm, inj = learner.bm, learner.injector
world = World(WorldConfig(seed=0))
by_name = {p.name: p for p in world.held_out}


@torch.no_grad()
def margin(question: str, answer: str) -> float:
    """How firmly the base model holds its own answer: over the answer's tokens (teacher-forced,
    its end marker included), the least gap between the answer token's logit and the best
    other token's."""
    prompt = bm.encode(bm.prompt(question))
    ans = bm.tokenizer.encode(bm.format.answer(answer), add_special_tokens=False)
    logits = bm.model(torch.tensor([prompt + ans])).logits[0, len(prompt) - 1 : -1]  # (T_answer, V)
    target = torch.tensor(ans)
    own = logits.gather(1, target[:, None])[:, 0]  # (T_answer,)
    rival = logits.scatter(1, target[:, None], float("-inf")).max(1).values  # (T_answer,)
    return float((own - rival).min())


@torch.no_grad()
def first_logits(question: str, ad: Adapter | None = None) -> torch.Tensor:
    """Next-token logits where the answer starts, with ``ad`` applied if given: (V,)."""
    ids = torch.tensor([bm.encode(bm.prompt(question))])
    if ad is None:
        return bm.model(ids).logits[0, -1]
    with applied(bm.model, ad.factors, ad.scale):
        return bm.model(ids).logits[0, -1]


def docs_only(ad: Adapter) -> Adapter:
    return Adapter(ad.parts()[0], 1.0, ad.layer_prefix)


for arg in sys.argv[1:] or ["0:60"]:
    seed, n, held_from, base_from = ([int(x) for x in arg.split(":")] + [0, 0])[:4]
    docs = injected_set(world, n, seed, held_from)[0]
    adapters = dict(zip(docs, inj.inject_many(list(docs.values())), strict=True))
    other, injected = locality_set(world, n, seed, held_from, base_from)
    plain = ask(bm, other)
    parts = {
        "whole": {q.person: adapters[injected[q.person]] for q in other},
        "bias_alone": {q.person: adapters[injected[q.person]].bias_only() for q in other},
        "docs_alone": {q.person: docs_only(adapters[injected[q.person]]) for q in other},
    }
    answers = {k: ask_injected(bm, other, v) for k, v in parts.items()}
    flips = {k: [i for i, (a, b) in enumerate(zip(plain, v, strict=True)) if a != b] for k, v in answers.items()}
    margins = [margin(q.question, a) for q, a in zip(other, plain, strict=True)]
    base_names = {p.name for p in world.base[base_from : base_from + n]}
    rows = []
    for i in flips["whole"]:
        q, now = other[i], answers["whole"][i]
        own = by_name[injected[q.person]].attrs[q.attribute]
        became = ("I don't know" if abstains(now) else "the injected person's value" if now == own
                  else "another value")
        # What moved at the first answer token: the base answer's own first token and the
        # adapted answer's (the same token when only a later one changed).
        before, after = first_logits(q.question), first_logits(q.question, parts["whole"][q.person])
        tok = {k: bm.tokenizer.encode(bm.format.answer(a), add_special_tokens=False)[0]
               for k, a in (("base", plain[i]), ("adapted", now))}
        rows.append({"question": q.question, "person": "base" if q.person in base_names else "stranger",
                     "base_answer": plain[i], "adapted": now, "became": became,
                     "injected": injected[q.person], "injected_value": own,
                     **{f"first_token_shift_{k}": round(float(after[t] - before[t]), 2) for k, t in tok.items()},
                     "margin": round(margins[i], 2), "bias_alone_flips": i in flips["bias_alone"],
                     "docs_alone_flip": i in flips["docs_alone"]})
    thin = [m < 2.0 for m in margins]
    print(json.dumps({
        "seed": seed, "n_people": n, "held_out_from": held_from, "base_from": base_from, "n_prompts": len(other),
        **{f"flips_{k}": len(v) for k, v in flips.items()},
        "locality": round(1 - len(flips["whole"]) / len(other), 4),
        "prompts_margin_under_2": sum(thin),
        "prompts_margin_under_0.5": sum(m < 0.5 for m in margins),
        "flips_margin_under_2": sum(thin[i] for i in flips["whole"]),
        "flips_by_kind": dict(Counter(f"{r['person']}: {r['became']}" for r in rows)),
        "flips": rows,
    }, indent=1))
