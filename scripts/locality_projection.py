"""Issue 3, locality (tried, not shipped): a soft null-space projection of each injected
adapter, after AlphaEdit, against the keys of what the base model already answers:
A' = A @ lam (C + lam I)^-1 per layer, lam = alpha x mean(diag C), where C = E[k k^T] over
the down_proj inputs that predict the base model's own greedy answers to closed-book
questions about base people 400-499 (never in bench qa's slices) and 100 fresh people.
Each argument ALPHA:WHICH:HELD_OUT_FROM:BASE_FROM runs `reverie bench qa --seed 0
--n-people 200 --n-cd 0` (plus the slice options) with that projection; ALPHA `none` is the
plain injector; WHICH is all (every rank), docs (the document ranks) or bias (the
context-independent bias ranks).

Usage: .venv/bin/python scripts/locality_projection.py none:all:0:0 100:all:0:0 10:all:0:0 1:bias:0:0
"""
import itertools
import json
import sys
import time

import torch

from reverie.base.qa import ask, sample_questions
from reverie.eval import bench_qa
from reverie.hypernet.adapter import Adapter
from reverie.learner import Learner
from reverie.world import World, WorldConfig

learner = Learner.load()
bm, inj = learner.bm, learner.injector
world = World(WorldConfig(seed=0))
qs = sample_questions(world, world.base[400:500] + list(itertools.islice(world.skill_people(7), 100)), 6, 11)
answers = ask(bm, qs)
layers = bm.model.model.layers
keys: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(layers))}
seen: dict[int, torch.Tensor] = {}
hooks = [layer.mlp.down_proj.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, a[0].detach()))
         for i, layer in enumerate(layers)]
with torch.no_grad():
    for q, a in zip(qs, answers, strict=True):
        prompt = bm.encode(bm.format.closed(q.question))
        ans = bm.tokenizer.encode(bm.format.answer(a), add_special_tokens=False)
        bm.model(torch.tensor([prompt + ans]))
        at = slice(len(prompt) - 1, len(prompt) + len(ans) - 1)  # positions that predict the answer tokens
        for i in keys:
            keys[i].append(seen[i][0, at])  # (T_answer, d_in)
for h in hooks:
    h.remove()
K = {i: torch.cat(v).float() for i, v in keys.items()}  # (N, d_in)
C = {i: k.T @ k / k.shape[0] for i, k in K.items()}  # (d_in, d_in)
mode: dict = {"alpha": None, "which": "all", "M": {}}


def shrink(alpha: float) -> dict[int, torch.Tensor]:
    """lam (C + lam I)^-1 per layer, lam = alpha x mean(diag C): (d_in, d_in)."""
    lam = {i: alpha * c.diagonal().mean() for i, c in C.items()}
    return {i: lam[i] * torch.linalg.inv(c + lam[i] * torch.eye(c.shape[0])) for i, c in C.items()}
plain = inj.inject_many


def projected(texts, queries=None):
    ads = plain(texts, queries)
    if mode["alpha"] is None:
        return ads
    out = []
    for ad in ads:
        rb = int(ad.meta.get("bias_rank", 0))
        f = {}
        for t, (A, B) in ad.factors.items():  # A (L, R, d_in)
            A = A.clone().float()
            R = A.shape[1]
            rows = {"all": range(R), "docs": range(R - rb), "bias": range(R - rb, R)}[mode["which"]]
            idx = torch.tensor(list(rows))
            for i in range(A.shape[0]):
                A[i, idx] = A[i, idx] @ mode["M"][i]
            f[t] = (A.to(ad.factors[t][0].dtype), B)
        out.append(Adapter(f, ad.scale, ad.layer_prefix, ad.meta))
    return out


inj.inject_many = projected
for spec in sys.argv[1:]:
    alpha, which, held_from, base_from = spec.split(":")
    mode.update(alpha=None if alpha == "none" else float(alpha), which=which)
    mode["M"] = {} if mode["alpha"] is None else shrink(mode["alpha"])
    t0 = time.time()
    r = bench_qa.run(bm, inj, seed=0, n_people=200, n_cd=0, held_out_from=int(held_from), base_from=int(base_from))
    keep = ("acc_inject", "relative_qa", "generalization", "locality", "locality_base", "locality_unknown")
    print(json.dumps({"spec": spec, **{k: r[k] for k in keep}, "s": round(time.time() - t0)}), flush=True)
