"""Reading documents for the hypernetwork: the base model's hidden states over each
document, normalised as each layer sees them, and what each target module received.

Inference (``HyperInjector``) and both training recipes read documents through here, so
the hypernetwork sees in use exactly what it saw in training.
"""

from __future__ import annotations

import torch

from reverie.base.model import BaseModel
from reverie.hypernet.lora import layers_of, target_module


def read_docs(bm: BaseModel, docs: list[str], targets: tuple[str, ...] = (), dtype: torch.dtype = torch.float32
              ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Hidden states entering each layer over each document's prefix, and what each
    target module received there; with ``dtype`` bfloat16 the backbone runs under autocast
    (see ``HyperInjector.read_dtype``), and what is returned is float32 all the same.

    Returns hidden (N, L, T, d), pad (N, T) (True at padding), {target: (N, L, T, d_in)}."""
    seqs = [bm.encode(bm.format.document(d))[: bm.max_length] for d in docs]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [bm.tokenizer.pad_token_id] * (width - len(s)) for s in seqs])
    pad = torch.tensor([[False] * len(s) + [True] * (width - len(s)) for s in seqs])
    seen: dict[tuple[str, int], torch.Tensor] = {}
    handles = [target_module(bm.model, i, t).register_forward_pre_hook(
        lambda _m, a, key=(t, i): seen.__setitem__(key, a[0].detach().float())) for t in targets for i in range(bm.n_layers)]
    device = next(bm.model.parameters()).device
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            # The backbone alone (transformers' ``base_model``): the hidden states are all that is
            # read, and the output head over the vocabulary was ~17% of the embedded model's pass.
            hs = bm.model.base_model(ids.to(device), attention_mask=(~pad).long().to(device),
                                     output_hidden_states=True).hidden_states
    finally:
        for h in handles:
            h.remove()
    hs = [h.float() for h in hs]
    ins = {t: torch.stack([seen[(t, i)] for i in range(bm.n_layers)], 1) for t in targets}  # (N, L, T, d_in)
    with torch.no_grad():
        # What each layer itself sees: its input norm applied. The raw residual stream carries
        # a few huge outlier dimensions (norms ~200 against ~1 for embeddings) that make every
        # token look alike after a plain LayerNorm; the model's own learned norm weights tame them.
        normed = [input_norm(bm.model, i)(hs[i]) for i in range(bm.n_layers)]
    return torch.stack(normed, 1), pad, ins  # (N, L, T, d)


def input_norm(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The normalisation a layer applies to its input (identity if it has none we know)."""
    blk = layers_of(model)[layer]
    for name in ("input_layernorm", "ln_1"):
        if hasattr(blk, name):
            return getattr(blk, name)
    return torch.nn.Identity()
