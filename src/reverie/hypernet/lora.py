"""Applying LoRA factors to a frozen base model: per-row adapters through forward hooks,
or merged into the weights.

Why by hand: peft's LoRA layers hold one set of trainable factors per adapter name; here
the factors are *outputs* of the hypernetwork (they carry its gradient), and every row of
a batch may carry a different adapter (a different document or group of documents).
Merged deltas and the on-disk format still follow peft (see ``adapter.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # target -> (A (N, L, R, d_in), B (N, L, d_out, R))


def layers_of(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a causal LM (Llama/Qwen2/Mistral or GPT-2 style)."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "layers"):
        return inner.layers
    tr = getattr(model, "transformer", None)
    if tr is not None and hasattr(tr, "h"):
        return tr.h
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")


def layer_prefix(model: nn.Module) -> str:
    return "model.layers" if hasattr(getattr(model, "model", None), "layers") else "transformer.h"


def target_module(model: nn.Module, layer: int, target: str) -> nn.Module:
    return _submodule(layers_of(model)[layer], target)


def _submodule(m: nn.Module, target: str) -> nn.Module:
    for part in target.split("."):
        m = getattr(m, part)
    return m


def target_dims(model: nn.Module, target: str) -> tuple[int, int]:
    """(d_in, d_out) of a target Linear module."""
    m = target_module(model, 0, target)
    if not isinstance(m, nn.Linear):
        raise ValueError(f"target {target!r} is {type(m).__name__}, not nn.Linear")
    return m.in_features, m.out_features


@contextmanager
def applied(model: nn.Module, factors: Factors, scale: float) -> Iterator[None]:
    """Within the block, each target output gains ``scale * x A^T B^T`` per batch row.

    Factors with a leading batch dimension N are applied row by row (N must match the
    batch); factors without one (A (L, R, d_in)) apply to every row.
    """
    handles, patched = [], []
    blocks = layers_of(model) if factors else nn.ModuleList()  # looked up once, not per target
    try:
        for t, (A, B) in factors.items():
            # unbind: every layer's view in one call (indexing A[..., layer, :, :] per layer
            # cost ~2 us a view on the answering path)
            for layer, (a, b) in enumerate(zip(A.unbind(-3), B.unbind(-3), strict=True)):
                m = _submodule(blocks[layer], t)
                dtype = cast(torch.Tensor, m.weight).dtype
                if a.dim() == 2 and isinstance(m, nn.Linear) and "forward" not in m.__dict__:
                    # One adapter for every row (answering): shadow the module's forward with
                    # one that adds the low-rank path. A forward hook does the same arithmetic
                    # but sends every call through nn.Module's hook machinery, ~4 us a call
                    # more (a 10 ms answer of the embedded model makes 36 such calls). Set in
                    # the instance dict directly: a plain function is no parameter, buffer or
                    # submodule, so nn.Module.__setattr__'s bookkeeping has nothing to do.
                    m.__dict__["forward"] = _shadow(m, a, b, scale, dtype)
                    patched.append(m)
                else:  # per-row adapters (training), or a module already shadowed (nested blocks)
                    handles.append(m.register_forward_hook(_hook(a, b, scale, dtype)))
        yield
    finally:
        for m in patched:
            del m.__dict__["forward"]
        for h in handles:
            h.remove()


def _shared(a: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # Factors cast to the module's dtype once, here: a no-op ``.to`` per call still costs
    # ~1.7 us, a fifth of the hook's whole overhead on a 10 ms answer of the embedded model.
    # Transposed views (matmul reads them as they are), the scale folded in once, not per
    # call; nothing is copied when there is nothing to cast or scale (a memory's items).
    at = a.T if a.dtype == dtype else a.T.to(dtype)  # (d_in, R)
    bt = b.T if scale == 1.0 else scale * b.T  # (R, d_out)
    return at, bt if bt.dtype == dtype else bt.to(dtype)


def _shadow(m: nn.Linear, a: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype):
    at, bt = _shared(a, b, scale, dtype)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, m.weight, m.bias) + (x @ at) @ bt  # (N, T, d_in) -> (N, T, d_out)

    return forward


def _hook(a: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype):
    if a.dim() == 2:  # one adapter for every row
        at, bt = _shared(a, b, scale, dtype)

        def shared(_mod, inp, out):
            return out + (inp[0] @ at) @ bt  # (N, T, d_in) -> (N, T, d_out)

        return shared
    a, b = a.to(dtype), b.to(dtype)

    def hook(_mod, inp, out):
        x = inp[0]  # (N, T, d_in)
        h = torch.einsum("ntd,nrd->ntr", x, a)  # (N, T, R)
        return out + scale * torch.einsum("ntr,nor->nto", h, b)  # (N, T, d_out)

    return hook


def concat(parts: list[Factors]) -> Factors:
    """Sum of several adapters' deltas, as one adapter: concatenate along the rank."""
    return {t: (torch.cat([p[t][0] for p in parts], -2), torch.cat([p[t][1] for p in parts], -1))
            for t in parts[0]}


@torch.no_grad()
def merge(model: nn.Module, factors: Factors, scale: float, sign: float = 1.0) -> None:
    """Add (or with ``sign=-1`` subtract) ``scale * B @ A`` into each target weight."""
    for t, (A, B) in factors.items():
        for layer in range(A.shape[-3]):
            w = cast(torch.Tensor, target_module(model, layer, t).weight)
            w += sign * scale * (B[layer].to(w.dtype) @ A[layer].to(w.dtype))
