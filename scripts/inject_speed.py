"""Injection time against one forward pass, with the hypernetwork's folded attention (the
default, `Block.cross_attend`) and with the plain computation, measured alternately in one run.

The passage is `reverie bench qa`'s timing passage: for a named real model (`smollm2`) 512
tokens of held-out test passages; for the embedded model (or a model folder) the first
benchmark biography. The forward pass keeps hidden states, as `bench qa`'s `inject_ratio` does; `backbone_s` is
the same pass without the output head (what injection reads).

Usage: .venv/bin/python scripts/inject_speed.py smollm2 [REPS]   (about a minute on 2 cores)
       .venv/bin/python scripts/inject_speed.py default [REPS]
"""
import json
import statistics
import sys
import time

import torch

from reverie.base.real import NAMED
from reverie.eval.bench_qa import forward_time
from reverie.learner import Learner

torch.set_num_threads(2)
name = sys.argv[1] if len(sys.argv) > 1 else "default"
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
learner = Learner.load(None if name == "default" else name)
bm, inj = learner.bm, learner.injector
if name in NAMED:
    from reverie.eval.bench_real import passage_of_tokens
    from reverie.world.passages import load

    text = passage_of_tokens(bm, load("test"), 512)
else:
    from reverie.eval.qa import documents
    from reverie.world import World

    w = World()
    text = next(iter(documents(w, w.held_out[:1], 0).values()))
inj.inject(text)  # warm-up
ids = torch.tensor([bm.encode(bm.format.document(text))[: bm.max_length]])
times: dict[str, list[float]] = {"folded": [], "plain": [], "forward": [], "backbone": []}
for _ in range(reps):
    for folded in (True, False):
        inj.hyper.folded = folded
        t0 = time.perf_counter()
        inj.inject(text)
        times["folded" if folded else "plain"].append(time.perf_counter() - t0)
    times["forward"].append(forward_time(bm, text, reps=1))
    with torch.no_grad():  # the part of the forward pass injection needs: no output head
        t0 = time.perf_counter()
        bm.model.base_model(ids, output_hidden_states=True)
        times["backbone"].append(time.perf_counter() - t0)
med = {k: statistics.median(v) for k, v in times.items()}
print(json.dumps({"model": name, "tokens": ids.shape[-1], "reps": reps,
                  "inject_s_folded": round(med["folded"], 4), "inject_s_plain": round(med["plain"], 4),
                  "forward_s": round(med["forward"], 4), "backbone_s": round(med["backbone"], 4),
                  "inject_ratio_folded": round(med["folded"] / med["forward"], 3),
                  "inject_ratio_plain": round(med["plain"] / med["forward"], 3)}))
