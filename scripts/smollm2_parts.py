"""Which part of the SmolLM2 hypernetwork's adapter carries what it learned: held-out KL
to the in-context teacher on the 48 validation passages (scripts/smollm2_data.py, two
questions each, the monitor of `reverie train hypernet --model smollm2`) with the whole
adapter, the context-independent bias alone, the passage components alone, and each
passage given the *next* passage's components (plus the bias).

Usage: .venv/bin/python scripts/smollm2_parts.py [HYPERNET_DIR]   (CPU, ~30 minutes)
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from smollm2_data import val_and_pool

from reverie.base.model import BaseModel
from reverie.base.real import shipped_hypernet
from reverie.hypernet.store import load_hypernet
from reverie.hypernet.train_real import RealRecipe, RealStep, teacher_pool

torch.manual_seed(0)
bm = BaseModel.load("smollm2")
hyper = load_hypernet(sys.argv[1] if len(sys.argv) > 1 else shipped_hypernet("smollm2"), bm).eval()
rc = RealRecipe(seed=0)
rows_file = Path("runs/smollm2_parts/eval_teacher.jsonl")  # the teacher's answers, written once
rows_file.parent.mkdir(parents=True, exist_ok=True)
rows = teacher_pool(bm, val_and_pool()[0], rc, rows_file, batch=16, n=rc.n_eval, q_per_doc=2)
st = RealStep(bm, hyper, rows, replace(rc, docs_per_step=len(rows)))
held = st.data(0)


class Part(torch.nn.Module):
    """The hypernetwork with part of its output removed or swapped."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode, self.cfg, self.key_targets = mode, hyper.cfg, hyper.key_targets

    def forward(self, *a):
        f, bias = hyper(*a)  # {t: (A (N, L, r, d_in), B (N, L, d_out, r))}, bias without N
        if self.mode == "bias alone":
            f = {t: (A, B * 0) for t, (A, B) in f.items()}
        elif self.mode == "passage components alone":
            bias = {t: (A, B * 0) for t, (A, B) in bias.items()}
        elif self.mode == "next passage's components":
            f = {t: (A.roll(1, 0), B.roll(1, 0)) for t, (A, B) in f.items()}
        return f, bias


for mode in ["whole adapter", "bias alone", "passage components alone", "next passage's components"]:
    st.hyper = hyper if mode == "whole adapter" else Part(mode)
    print(json.dumps({"mode": mode, **st.evaluate(held)}), flush=True)
