"""Issue 3: what each part of an emitted adapter does, measured on `reverie bench qa`'s own
questions. Each SPEC edits every adapter the hypernetwork emits, then reports `acc_inject`,
`generalization` and the locality flips at each seed, asked exactly as bench qa asks them
(same people, documents, questions and locality pairs; bench qa's other phases are skipped).

SPEC is `none`, or edits joined by `+`:
- `zero:PART:LAYER`       zero PART (`docs`: the document ranks, `bias`: the context-independent
                          bias ranks) at one layer;
- `scale:PART:X[:LAYER]`  multiply PART by X, at one layer or at all;
- `svd:PART:K`            keep the best rank-K approximation, per layer, of the document ranks
                          (`docs`) or of the whole delta (`all`: document and bias ranks together);
- `soup:DIR,DIR,...`      average the hypernetworks in those exported folders weight by weight
                          (with the shipped one or MODEL's) before injecting.
Environment: SEEDS (default 0,1,2), N_PEOPLE (200), SLICE=HELD_OUT_FROM:BASE_FROM (bench qa's
`--held-out-from` / `--base-from`; default 0:0), MODEL=DIR (as `reverie bench qa --model DIR`),
TEMPLATES=1 adds generalization per held-out template (right / asked) and each miss
(template, gold answer, the answer given).

Usage: .venv/bin/python scripts/adapter_edits.py none zero:bias:0 scale:bias:0.5   (~1.5 min a spec)
"""
import json
import os
import sys
import time
from collections import defaultdict

import torch

from reverie.base.qa import ask, score
from reverie.eval.bench_qa import injected_set, locality_set
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.qa import ask_injected
from reverie.hypernet.store import load_hypernet
from reverie.learner import Learner
from reverie.world import World, WorldConfig

torch.set_num_threads(2)
learner = Learner.load(os.environ.get("MODEL") or None)
bm, inj = learner.bm, learner.injector
shipped = {k: v.clone() for k, v in inj.hyper.state_dict().items()}
world = World(WorldConfig(seed=0))
seeds = [int(s) for s in os.environ.get("SEEDS", "0,1,2").split(",")]
n = int(os.environ.get("N_PEOPLE", "200"))
held_from, base_from = (int(x) for x in os.environ.get("SLICE", "0:0").split(":"))


def edited(ad: Adapter, edits: list[list[str]]) -> Adapter:
    """``ad`` with its document and bias ranks truncated, scaled or zeroed as ``edits`` say."""
    docs, bias = ad.parts()
    assert bias is not None, "this hypernetwork has no bias ranks"
    parts = {"docs": {t: [A, B.clone()] for t, (A, B) in docs.items()},
             "bias": {t: [A, B.clone()] for t, (A, B) in bias.items()}}
    svds = [e for e in edits if e[0] == "svd"]
    for e in (e for e in svds if e[1] == "docs"):
        parts["docs"] = {t: list(truncated(A, B, int(e[2]))) for t, (A, B) in parts["docs"].items()}
    for e in (e for e in edits if e[0] != "svd"):
        kind, part = e[0], e[1]
        x = 0.0 if kind == "zero" else float(e[2])
        layer = e[2] if kind == "zero" else (e[3] if len(e) > 3 else None)
        for fac in parts[part].values():
            if layer is None:
                fac[1] *= x
            else:
                fac[1][int(layer)] *= x  # B: (L, d_out, r)
    f = {t: (torch.cat([parts["docs"][t][0], parts["bias"][t][0]], 1),  # (L, r + rb, d_in)
             torch.cat([parts["docs"][t][1], parts["bias"][t][1]], 2))  # (L, d_out, r + rb)
         for t in docs}
    for e in (e for e in svds if e[1] == "all"):
        f = {t: truncated(A, B, int(e[2])) for t, (A, B) in f.items()}
    return Adapter(f, 1.0, ad.layer_prefix)


def truncated(A: torch.Tensor, B: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best rank-k approximation of B @ A per layer, as factors (A (L, k, d_in), B (L, d_out, k))."""
    U, S, Vh = torch.linalg.svd(B @ A, full_matrices=False)  # (L, d_out, m), (L, m), (L, m, d_in)
    return Vh[:, :k], U[:, :, :k] * S[:, None, :k]


# What the specs share, per seed: the benchmark's documents and questions, its locality
# pairs and the base model's own answers to them.
fixed = {}
for seed in seeds:
    docs, qas, held = injected_set(world, n, seed, held_from)
    other, injected = locality_set(world, n, seed, held_from, base_from)
    fixed[seed] = (docs, qas, held, other, injected, ask(bm, other))

for spec in sys.argv[1:] or ["none"]:
    t0 = time.time()
    edits = [] if spec == "none" else [e.split(":") for e in spec.split("+")]
    soups = [e for e in edits if e[0] == "soup"]
    edits = [e for e in edits if e[0] != "soup"]
    state = shipped
    if soups:
        dirs = soups[0][1].split(",")
        states = [shipped] + [load_hypernet(d, bm).state_dict() for d in dirs]
        state = {k: sum(s[k].float() for s in states) / len(states) for k in shipped}
    inj.hyper.load_state_dict(state)
    out: dict = {"spec": spec, "n_people": n, "slice": f"{held_from}:{base_from}"}
    flips = 0
    for seed in seeds:
        docs, qas, held, other, injected, plain = fixed[seed]
        adapters = {k: edited(a, edits) for k, a in zip(docs, inj.inject_many(list(docs.values())), strict=True)}
        got = ask_injected(bm, held, adapters)
        changed = ask_injected(bm, other, {q.person: adapters[injected[q.person]] for q in other})
        k = sum(a != b for a, b in zip(plain, changed, strict=True))
        flips += k
        out[f"seed{seed}"] = {"acc_inject": round(score(ask_injected(bm, qas, adapters), qas).acc, 4),
                              "generalization": round(score(got, held).acc, 4),
                              "locality": round(1 - k / len(other), 4), "flips": k}
        if os.environ.get("TEMPLATES"):
            per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            misses = []
            for q, a in zip(held, got, strict=True):
                right = score([a], [q]).acc == 1.0
                per[q.template][0] += right
                per[q.template][1] += 1
                if not right:
                    misses.append([q.template, q.answer, a])
            out[f"seed{seed}"]["generalization_per_template"] = {t: f"{r} / {m}" for t, (r, m) in sorted(per.items())}
            out[f"seed{seed}"]["generalization_misses"] = sorted(misses)
    for key in ("acc_inject", "generalization"):
        out[f"{key}_mean"] = round(sum(out[f"seed{s}"][key] for s in seeds) / len(seeds), 4)
    out["flips"] = flips
    out["n_locality"] = 2 * n * len(seeds)
    out["s"] = round(time.time() - t0)
    print(json.dumps(out), flush=True)
