"""Injection time against one forward pass, with the hypernetwork's folded attention (the
default, `Block.cross_attend`) and with the plain computation, measured alternately in one run.

The passage is `reverie bench qa`'s timing passage: for a named real model (`smollm2`) 512
tokens of held-out test passages; for the embedded model (or a model folder) the first
benchmark biography. The forward pass keeps hidden states, as `bench qa`'s `inject_ratio` does; `backbone_s` is
the same pass without the output head (what injection reads).

A third injection reads the passage in bfloat16 (`HyperInjector.read_dtype`; the
backbone's pass under autocast, the hypernetwork in float32), with `backbone_bf16_s` its
pass alone; `native_bf16` says whether this CPU multiplies in bfloat16 natively (without it,
emulation makes that variant slower, not faster). Where the package index does not offer the
real passages (`reverie data fetch` fails), the SmolLM2 passage is 512 tokens of this
repository's README instead, and `text` says so.

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
from reverie.hypernet.injectors import native_bf16
from reverie.learner import Learner

torch.set_num_threads(2)
name = sys.argv[1] if len(sys.argv) > 1 else "default"
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
learner = Learner.load(None if name == "default" else name)
bm, inj = learner.bm, learner.injector
source = "the first held-out biography"
if name in NAMED:
    from pathlib import Path

    from reverie.eval.bench_real import timing_passage

    text, source = timing_passage(bm, Path(__file__).resolve().parent.parent / "README.md")
else:
    from reverie.base.qa import documents
    from reverie.world import World

    w = World()
    text = next(iter(documents(w, w.held_out[:1], 0).values()))
inj.inject(text)  # warm-up
ids = torch.tensor([bm.encode(bm.format.document(text))[: bm.max_length]])
times: dict[str, list[float]] = {k: [] for k in ("folded", "plain", "bf16", "forward", "backbone", "backbone_bf16")}
for _ in range(reps):
    for variant, folded, read in (("folded", True, "float32"), ("plain", False, "float32"), ("bf16", True, "bfloat16")):
        inj.hyper.folded, inj.read_dtype = folded, read
        t0 = time.perf_counter()
        inj.inject(text)
        times[variant].append(time.perf_counter() - t0)
    times["forward"].append(forward_time(bm, text, reps=1))
    for variant, dtype in (("backbone", torch.float32), ("backbone_bf16", torch.bfloat16)):
        # the part of the forward pass injection needs: no output head
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            t0 = time.perf_counter()
            bm.model.base_model(ids, output_hidden_states=True)
            times[variant].append(time.perf_counter() - t0)
med = {k: statistics.median(v) for k, v in times.items()}
print(json.dumps({"model": name, "text": source, "tokens": ids.shape[-1], "reps": reps,
                  "native_bf16": native_bf16(torch.device("cpu")),
                  "inject_s_folded": round(med["folded"], 4), "inject_s_plain": round(med["plain"], 4),
                  "inject_s_bf16": round(med["bf16"], 4),
                  "forward_s": round(med["forward"], 4), "backbone_s": round(med["backbone"], 4),
                  "backbone_bf16_s": round(med["backbone_bf16"], 4),
                  "inject_ratio_folded": round(med["folded"] / med["forward"], 3),
                  "inject_ratio_plain": round(med["plain"] / med["forward"], 3),
                  "inject_ratio_bf16": round(med["bf16"] / med["forward"], 3)}))
