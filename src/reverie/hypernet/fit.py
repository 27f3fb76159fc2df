"""Fitting a LoRA by gradient steps on (question, answer) rows: the loop behind sleep-time
learning on a real model (the ``learn`` injector, ``reverie.sleep.learn``).

Only the top ``layers`` layers carry the adapter, so everything below them computes the
same activations at every step: they run once, without gradients, and their output is
cached; each step then runs the top layers alone. Loss: cross-entropy on the answer
tokens (the model's own answers with the text in context, or the text's own words), so
the model with the adapter and no text says what it said with the text.

Hand-written rather than a transformers ``Trainer`` or a peft ``get_peft_model`` run: a few
dozen full-batch steps on one small batch, where the trainer's set-up would cost more
than the fit; the lower-layer cache needs a forward that starts half-way up the model;
and the factors come out in the memory's own (L, R, d) layout.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from reverie.base.model import IGNORE, BaseModel, native_bf16
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.lora import Factors, applied, layer_prefix, target_dims


@dataclass
class FitConfig:
    """How a LoRA is fitted to rows (the ``learn`` injector: sleep on a real model)."""

    layers: int | None = 8
    """Top layers that carry the adapter; the ones below run once and are cached (None: all)."""
    rank: int = 8
    """LoRA rank."""
    alpha: float = 16.0
    """LoRA alpha: the delta is ``alpha / rank * B @ A``."""
    targets: tuple[str, ...] = ("mlp.down_proj",)
    """Modules inside each adapted layer."""
    steps: int = 30
    """Most AdamW steps (full batch)."""
    lr: float = 1e-2
    """AdamW learning rate (constant; B starts at zero, so the first steps move gently)."""
    stop_loss: float = 0.02
    """Stop once every row's mean answer-token loss is below this (the probes are answered)."""
    dtype: str = "auto"
    """Precision of the top layers' pass: ``float32``, ``bfloat16``, or ``auto``: bfloat16
    where the CPU or GPU multiplies in it natively. Factors and optimiser stay float32."""
    seed: int = 0
    """Seeds the factors' initialisation."""

    def record(self) -> dict[str, Any]:
        return asdict(self)


def compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """``FitConfig.dtype`` resolved for ``device``."""
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def encode_rows(bm: BaseModel, rows: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, labels, attention mask), each (N, T): every row the model's closed-book prompt
    for the question followed by the answer (:meth:`BaseModel.qa_rows`)."""
    return bm.qa_rows([(None, q, a) for q, a in rows])


class Upper:
    """The top ``k`` layers of a Llama-family model as a function of the cached input of
    the first of them: ``Upper(bm, k, ids, mask)(...)`` -> final hidden states (N, T, d).

    Falls back to the whole model (k = all layers) where the model is not built like
    transformers' Llama (``model.model`` with ``layers``, ``norm`` and ``rotary_emb``)."""

    def __init__(self, bm: BaseModel, k: int | None, ids: torch.Tensor, mask: torch.Tensor):
        from transformers.masking_utils import create_causal_mask

        inner: Any = getattr(bm.model, "model", None)
        L = bm.n_layers
        ok = inner is not None and all(hasattr(inner, a) for a in ("layers", "norm", "rotary_emb"))
        self.k = L if (k is None or not ok) else max(1, min(int(k), L))
        self.first = L - self.k
        self.bm, self.ids, self.mask = bm, ids, mask
        self.inner = inner if ok else None
        if self.inner is None:
            return
        with torch.no_grad():
            out = inner(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
            self.h0 = out.hidden_states[self.first].detach()  # (N, T, d): input of the first adapted layer
            self.pos = torch.arange(ids.shape[1])[None]  # (1, T)
            self.causal = create_causal_mask(config=bm.model.config, inputs_embeds=self.h0, attention_mask=mask,
                                             cache=None, position_ids=self.pos)
            self.rope = inner.rotary_emb(self.h0, position_ids=self.pos)

    def __call__(self) -> torch.Tensor:
        if self.inner is None:
            base = getattr(self.bm.model, "base_model", self.bm.model)
            return base(input_ids=self.ids, attention_mask=self.mask, use_cache=False).last_hidden_state
        h = self.h0
        for layer in self.inner.layers[self.first :]:
            h = layer(h, attention_mask=self.causal, position_embeddings=self.rope, position_ids=self.pos, use_cache=False)
            h = h[0] if isinstance(h, tuple) else h
        return self.inner.norm(h)  # (N, T, d)


def fit_rows(bm: BaseModel, rows: list[tuple[str, str]], cfg: FitConfig | None = None,
             init: Factors | None = None, progress: Any = None) -> Adapter:
    """A LoRA under which ``bm`` (as its weights are now), asked each question with no
    text in context, answers it as the row says. ``init``: starting factors (e.g. the
    hypernetwork's adapter, scale folded into B, of this config's rank and targets).
    ``progress(step, loss)`` is called after every step."""
    ids, lab, mask = encode_rows(bm, rows)
    return fit_batch(bm, ids, lab, mask, cfg, init, progress)


def fit_batch(bm: BaseModel, ids: torch.Tensor, lab: torch.Tensor, mask: torch.Tensor, cfg: FitConfig | None = None,
              init: Factors | None = None, progress: Any = None, teacher: torch.Tensor | None = None) -> Adapter:
    """The fit loop on an encoded batch (ids, labels, mask: (N, T) each): cross-entropy on the
    labelled tokens, or with ``teacher`` (K, V): the KL from the teacher's distribution at
    each labelled token (in order) to the model's. See :func:`fit_rows`."""
    cfg = cfg or FitConfig()
    t0 = time.perf_counter()
    n = len(ids)
    up = Upper(bm, cfg.layers, ids, mask)
    tgt = lab[:, 1:]  # (N, T-1): the token each position predicts
    sel = tgt != IGNORE
    row_of = torch.arange(n)[:, None].expand_as(tgt)[sel]  # (K,) row of each scored token
    counts = torch.bincount(row_of, minlength=n).clamp(min=1).float()  # (N,)
    t_logp = None if teacher is None else F.log_softmax(teacher.float(), -1)  # (K, V)
    scale = cfg.alpha / cfg.rank
    g = torch.Generator().manual_seed(cfg.seed)
    params: dict[str, tuple[torch.nn.Parameter, torch.nn.Parameter]] = {}
    for t in cfg.targets:
        d_in, d_out = target_dims(bm.model, t)
        if init is not None and t in init:
            a0, b0 = init[t][0][up.first :].float(), init[t][1][up.first :].float() / scale
        else:
            a0 = torch.randn(up.k, cfg.rank, d_in, generator=g) / d_in**0.5  # (k, R, d_in)
            b0 = torch.zeros(up.k, d_out, cfg.rank)  # (k, d_out, R)
        params[t] = (torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone()))
    opt = torch.optim.AdamW([p for ab in params.values() for p in ab], lr=cfg.lr, weight_decay=0.0)
    dtype = compute_dtype(cfg.dtype, ids.device)
    head = bm.model.get_output_embeddings()
    pad = {t: (torch.zeros(up.first, *a.shape[1:]), torch.zeros(up.first, *b.shape[1:])) for t, (a, b) in params.items()}
    steps, losses = 0, torch.zeros(n)
    for steps in range(1, cfg.steps + 1):
        # Factors for every layer (zeros below the adapted ones), so ``applied`` indexes as usual.
        full = {t: (torch.cat([pad[t][0], a]), torch.cat([pad[t][1], b])) for t, (a, b) in params.items()}
        with applied(bm.model, full, scale), torch.autocast(ids.device.type, dtype=dtype, enabled=dtype != torch.float32):
            h = up()[:, :-1][sel]  # (K, d): states that predict an answer token
            logits = head(h).float()  # (K, V)
        if t_logp is None:
            tok_loss = F.cross_entropy(logits, tgt[sel], reduction="none")  # (K,)
        else:
            tok_loss = F.kl_div(F.log_softmax(logits, -1), t_logp, log_target=True, reduction="none").sum(-1)  # (K,)
        losses = torch.zeros(n).index_add_(0, row_of, tok_loss.detach()) / counts  # (N,)
        loss = tok_loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(steps, float(loss))
        if float(losses.max()) < cfg.stop_loss:
            break
    fac = {t: (torch.cat([pad[t][0], a.detach()]).clone(), torch.cat([pad[t][1], b.detach()]).clone())
           for t, (a, b) in params.items()}
    meta = {"injector": "fit", "rows": n, "steps": steps, "final_loss": round(float(losses.mean()), 5),
            "worst_row_loss": round(float(losses.max()), 5), "layers_adapted": up.k,
            "fit_s": round(time.perf_counter() - t0, 3), "fit": cfg.record()}
    return Adapter(fac, scale, layer_prefix(bm.model), meta)


def stacked(base: Factors, ad: Adapter) -> Adapter:
    """One adapter that applies ``base`` (factors, scale folded in) and ``ad`` together: their
    ranks side by side, ``(L, r1 + r2, d_in)`` and ``(L, d_out, r1 + r2)``, scale 1. A fit
    made on top of ``base`` (with it applied) is meant to act with it."""
    fac = {t: (torch.cat([base[t][0].float(), A.float()], dim=1),  # (L, r1 + r2, d_in)
               torch.cat([base[t][1].float(), B.float() * ad.scale], dim=2))  # (L, d_out, r1 + r2)
           for t, (A, B) in ad.factors.items()}
    return Adapter(fac, 1.0, ad.layer_prefix, dict(ad.meta))


__all__ = ["FitConfig", "Upper", "compute_dtype", "encode_rows", "fit_batch", "fit_rows", "stacked"]
