"""Issue 8: would the SmolLM2 hypernetwork's adapters answer better at another strength?

Injects each of `scripts/smollm2_data.py`'s 48 validation passages (SQuAD dev articles kept
out of training; never the test split `reverie bench qa` scores) with the shipped
hypernetwork, and scores two dataset questions per passage (seed 0) with ROUGE-L F1, exact
match and token F1 (as `reverie bench qa --model smollm2` does) under no context, the passage
in context, and the adapter with its scale multiplied by each factor given.

Usage: .venv/bin/python scripts/smollm2_scale.py 0.5 1 2 3   (about 6 minutes on 2 cores)
"""
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smollm2_data import val_and_pool  # noqa: E402

from reverie.base.model import Generation  # noqa: E402
from reverie.eval.bench_real import Row, scores  # noqa: E402
from reverie.hypernet.qa import ask_injected  # noqa: E402
from reverie.learner import Learner  # noqa: E402

torch.set_num_threads(2)
val, _ = val_and_pool()
r = random.Random(0)
rows = [Row(p.id, q, a) for p in val for q, a in r.sample(p.qas, min(2, len(p.qas)))]
text = {p.id: p.text for p in val}
learner = Learner.load("smollm2")
bm = learner.bm
gen = Generation(max_new_tokens=24, batch_size=16)
t0 = time.time()
out = scores(bm.answer_batch([bm.prompt(x.question) for x in rows], gen), rows, "none")
out |= scores(bm.answer_batch([bm.prompt(x.question, text[x.person]) for x in rows], gen), rows, "full")
print(json.dumps({"n_passages": len(val), "n_questions": len(rows), **out}), flush=True)
adapters = dict(zip(text, learner.injector.inject_many(list(text.values())), strict=True))
for factor in sys.argv[1:]:
    scaled = {k: dataclasses.replace(a, scale=a.scale * float(factor)) for k, a in adapters.items()}
    print(json.dumps({"scale_x": float(factor), **scores(ask_injected(bm, rows, scaled, gen), rows, "inject"),
                      "t": round(time.time() - t0)}), flush=True)
