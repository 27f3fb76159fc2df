"""Where SmolLM2's reading pass spends its time on this CPU, and how fast this CPU multiplies
matrices of the backbone's shapes: the floor under `reverie inject --model smollm2`.

Prints one JSON line:
- `gemm_gflops`: float32 `F.linear` on the 514-token passage's shapes (576 -> 1536, the MLP's
  gate and up projections; 1536 -> 576, its down projection; 576 -> 576, attention's q and o),
  median of 20 after warm-up;
- `backbone_s`, median of 5, and `op_share`: the torch profiler's self time per operator
  (matrix products, attention, the rest) over one pass; `backbone_gflops`: the linear layers'
  multiply-adds over the pass's matrix-product time;
- `int8_s` and `int8_hidden_cos_min`: the same pass with torch's dynamic int8 quantization of
  every Linear (fbgemm), and the lowest mean cosine, over layers, between its hidden states
  and the float32 ones (a faster read that reads something else);
- `bf16_over_fp32` and `bf16_hidden_cos_min`: the pass under bfloat16 autocast, median of 5,
  and its hidden states against the float32 ones as for int8; `gemm_gflops_bf16`: `F.linear`
  in bfloat16 on the same shapes; `native_bf16`: whether this CPU has bfloat16 instructions
  (AVX-512 BF16 or AMX; without them bfloat16 is emulated, and slower than float32).

The passage is bench qa's timing passage (512 tokens of held-out test passages), or 512
tokens of this repository's README where the package index does not offer the passages.

Usage: .venv/bin/python scripts/backbone_profile.py   (about a minute on 2 cores; nothing else running)
"""
import copy
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import profile

from reverie.base.model import BaseModel
from reverie.eval.bench_real import timing_passage
from reverie.hypernet.injectors import native_bf16

torch.set_num_threads(2)
bm = BaseModel.load("smollm2")
text, source = timing_passage(bm, Path(__file__).resolve().parent.parent / "README.md")
ids = torch.tensor([bm.encode(bm.format.document(text))[: bm.max_length]])  # (1, T)
T = ids.shape[-1]
cfg = bm.model.config


def median_s(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


gemm, gemm_bf16 = {}, {}
for d_in, d_out in ((cfg.hidden_size, cfg.intermediate_size), (cfg.intermediate_size, cfg.hidden_size),
                    (cfg.hidden_size, cfg.hidden_size)):
    x, w = torch.randn(T, d_in), torch.randn(d_out, d_in)  # (T, d_in), (d_out, d_in)
    s = median_s(lambda x=x, w=w: torch.nn.functional.linear(x, w), 20)
    gemm[f"{d_in}->{d_out}"] = round(2 * T * d_in * d_out / s / 1e9, 1)
    x, w = x.bfloat16(), w.bfloat16()
    s = median_s(lambda x=x, w=w: torch.nn.functional.linear(x, w), 20)
    gemm_bf16[f"{d_in}->{d_out}"] = round(2 * T * d_in * d_out / s / 1e9, 1)

backbone = bm.model.base_model
with torch.no_grad():
    fp_s = median_s(lambda: backbone(ids, output_hidden_states=True), 5)
    with profile() as prof:
        backbone(ids, output_hidden_states=True)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    mm = sum(v for k, v in self_us.items() if k in ("aten::mm", "aten::addmm", "aten::bmm"))
    attn = sum(v for k, v in self_us.items() if "scaled_dot_product" in k)
    linear_flops = 2 * T * sum(m.in_features * m.out_features for n, m in backbone.named_modules()
                               if isinstance(m, torch.nn.Linear))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates its quantized tensor types, not this use
        q8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(backbone), {torch.nn.Linear}, dtype=torch.qint8)
        q8_s = median_s(lambda: q8(ids, output_hidden_states=True), 5)
        a = backbone(ids, output_hidden_states=True).hidden_states
        b = q8(ids, output_hidden_states=True).hidden_states
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_s = median_s(lambda: backbone(ids, output_hidden_states=True), 5)
        c = backbone(ids, output_hidden_states=True).hidden_states


def cos_min(xs: tuple, ys: tuple) -> float:
    return min(torch.nn.functional.cosine_similarity(x[0].float(), y[0].float(), -1).mean().item()
               for x, y in zip(xs, ys, strict=True))


print(json.dumps({"text": source, "tokens": T, "native_bf16": native_bf16(torch.device("cpu")),
                  "gemm_gflops": gemm, "gemm_gflops_bf16": gemm_bf16, "backbone_s": round(fp_s, 3),
                  "op_share": {"matmul": round(mm / total, 3), "attention": round(attn / total, 3),
                               "other": round(1 - (mm + attn) / total, 3)},
                  "backbone_gflops": round(linear_flops / (mm / 1e6) / 1e9, 1),
                  "int8_s": round(q8_s, 3), "int8_over_fp32": round(q8_s / fp_s, 3),
                  "int8_hidden_cos_min": round(cos_min(a, b), 3), "bf16_s": round(bf16_s, 3),
                  "bf16_over_fp32": round(bf16_s / fp_s, 2), "bf16_hidden_cos_min": round(cos_min(a, c), 4)}))
