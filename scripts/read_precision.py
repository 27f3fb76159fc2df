"""What reading a passage in bfloat16 (`HyperInjector.read_dtype`) changes in SmolLM2's
injected adapters and answers, against the float32 reading the hypernetwork was trained on.

For each text, one adapter from each reading; then the same questions answered with no
adapter, under the float32-read adapter and under the bfloat16-read one (greedy, no context).
Prints one JSON line:
- `delta_rel_err_mean` / `_max`: per layer and text, ||dW_bf16 - dW_fp32|| / ||dW_fp32||;
- `agree_bf16_fp32`: share of answers the two adapters give alike, and `agree_none_fp32`:
  the same share between no adapter and the float32 one (how much the adapter changes at all);
- with real passages, ROUGE-L F1 against the accepted answers for each of the three.

Texts: the held-out SQuAD test passages (`reverie data fetch`) at seed 0, two questions each;
where the package index does not offer them, held-out world biographies with three questions
each, which SmolLM2 reads as plain prose (`source` says which).

Usage: .venv/bin/python scripts/read_precision.py [N_TEXTS]   (N_TEXTS=40: about 6 minutes on 2 cores)
"""
import json
import random
import statistics
import sys

import torch

from reverie.errors import DataUnavailable
from reverie.eval.bench_real import rouge_l
from reverie.hypernet.lora import applied
from reverie.learner import Learner

torch.set_num_threads(2)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
learner = Learner.load("smollm2")
bm, inj = learner.bm, learner.injector
r = random.Random(0)
try:
    from reverie.world.passages import load

    chosen = r.sample(load("test"), n)
    texts = [p.text for p in chosen]
    qas = [[(q, a) for q, a in r.sample(p.qas, min(2, len(p.qas)))] for p in chosen]
    source = "held-out SQuAD test passages"
except DataUnavailable:
    from reverie.world import World

    w = World()
    people = w.held_out[:n]
    texts = [w.biography(p, r) for p in people]
    qas = [[(x.question, [x.answer]) for x in r.sample(w.questions(p), 3)] for p in people]
    source = "held-out world biographies"

ads = {}
for read in ("float32", "bfloat16"):
    inj.read_dtype = read
    ads[read] = inj.inject_many(texts)
errs = []
for a32, a16 in zip(ads["float32"], ads["bfloat16"], strict=True):
    for t, (A, B) in a32.factors.items():
        A2, B2 = a16.factors[t]
        d32, d16 = B @ A, B2 @ A2  # (L, d_out, d_in)
        errs += ((d16 - d32).flatten(1).norm(dim=1) / d32.flatten(1).norm(dim=1)).tolist()


def answers(adapters: list | None) -> list[str]:
    out = []
    for i, rows in enumerate(qas):
        prompts = [bm.prompt(q) for q, _ in rows]
        if adapters is None:
            out += bm.answer_batch(prompts)
        else:
            with applied(bm.model, adapters[i].factors, adapters[i].scale):
                out += bm.answer_batch(prompts)
    return out


got = {"none": answers(None), "float32": answers(ads["float32"]), "bfloat16": answers(ads["bfloat16"])}
gold = [a for rows in qas for _, a in rows]
agree = lambda x, y: round(sum(a == b for a, b in zip(got[x], got[y], strict=True)) / len(gold), 4)  # noqa: E731
out = {"source": source, "n_texts": len(texts), "n_questions": len(gold),
       "delta_rel_err_mean": round(statistics.mean(errs), 4), "delta_rel_err_max": round(max(errs), 4),
       "agree_bf16_fp32": agree("bfloat16", "float32"), "agree_none_fp32": agree("none", "float32")}
out |= {f"rougeL_{k}": round(statistics.mean(rouge_l(p, g) for p, g in zip(v, gold, strict=True)), 4) for k, v in got.items()}
print(json.dumps(out))
