"""Documents longer than the window: split into chunks, one adapter per chunk, combined.

Combinations (the :data:`COMBINERS` table):
- ``concat``: the chunks' ranks side by side (Doc-to-LoRA's default): exact sum of the
  chunk deltas, rank and bytes grow with length;
- ``svd``: the same sum re-compressed to the hypernetwork's own rank per layer (its best
  rank-r approximation), so an adapter's size does not depend on the document's length.

The context-independent bias adapter is kept once, not once per chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from reverie.hypernet.adapter import Adapter
from reverie.hypernet.lora import Factors, concat

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """``text`` split after each ``.``, ``!`` or ``?`` followed by white space."""
    return _SENTENCE.split(text.strip())


def split_chunks(text: str, n_tokens: Callable[[str], int], limit: int) -> list[str]:
    """Consecutive sentences packed greedily into chunks of at most ``limit`` tokens (a
    sentence longer than that is cut on words)."""
    chunks: list[str] = []
    cur: list[str] = []
    for sent in sentences(text):
        pieces = [sent]
        if n_tokens(sent) > limit:  # a runaway sentence: cut on words
            words, pieces = sent.split(), []
            part: list[str] = []
            for w in words:
                if part and n_tokens(" ".join(part + [w])) > limit:
                    pieces.append(" ".join(part))
                    part = []
                part.append(w)
            pieces.append(" ".join(part))
        for piece in pieces:
            if cur and n_tokens(" ".join(cur + [piece])) > limit:
                chunks.append(" ".join(cur))
                cur = []
            cur.append(piece)
    if cur:
        chunks.append(" ".join(cur))
    return chunks


def concat_ranks(parts: list[Factors], rank: int) -> Factors:
    return concat(parts)  # exact: the rank argument does not bound it


@torch.no_grad()
def svd_ranks(parts: list[Factors], rank: int) -> Factors:
    """Best rank-``rank`` approximation of the summed deltas, per layer.

    Written out rather than through peft's ``add_weighted_adapter(combination_type="svd")``:
    that needs the chunks loaded as named adapters of a PeftModel and forms each layer's
    dense delta; here QR of the stacked factors reduces the SVD to an (R x R) core."""
    cat = concat(parts)
    out = {}
    for t, (A, B) in cat.items():  # A (L, R, d_in), B (L, d_out, R)
        qb, rb = torch.linalg.qr(B)  # (L, d_out, R), (L, R, R)
        qa, ra = torch.linalg.qr(A.transpose(-1, -2))  # (L, d_in, R), (L, R, R)
        u, s, vh = torch.linalg.svd(rb @ ra.transpose(-1, -2))  # core (L, R, R)
        k = min(rank, s.shape[-1])
        root = s[..., :k].sqrt()  # (L, k)
        new_b = qb @ (u[..., :k] * root[:, None, :])  # (L, d_out, k)
        new_a = (root[..., None] * vh[:, :k]) @ qa.transpose(-1, -2)  # (L, k, d_in)
        out[t] = (new_a, new_b)
    return out


COMBINERS: dict[str, Callable[[list[Factors], int], Factors]] = {"concat": concat_ranks, "svd": svd_ranks}
"""Name -> f(chunk factors, rank) -> one document's factors; a new combination is one entry."""


def combine(adapters: list[Adapter], how: str, rank: int) -> Adapter:
    """One adapter for a document from its chunks' adapters."""
    if how not in COMBINERS:
        raise ValueError(f"unknown combination {how!r} (known: {', '.join(COMBINERS)})")
    parts = [a.parts() for a in adapters]
    docs = COMBINERS[how]([p for p, _ in parts], rank)
    bias = parts[0][1]
    fac = concat([docs, bias]) if bias is not None else docs
    meta = dict(adapters[0].meta)
    meta |= {"chunks": len(adapters), "combine": how, "bias_rank": int(meta.get("bias_rank", 0)),
             "inject_s": round(sum(float(a.meta.get("inject_s", 0.0)) for a in adapters), 5)}
    return Adapter({t: (A.contiguous(), B.contiguous()) for t, (A, B) in fac.items()}, 1.0, adapters[0].layer_prefix, meta)
