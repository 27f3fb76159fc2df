"""The hypernetwork: a Perceiver that reads a frozen base model's per-layer activations
over a document and emits rank-r LoRA factors for each target module of every layer.

After Doc-to-LoRA: learned latent queries cross-attend to the hidden states entering a
layer; the Perceiver is shared across layers (a layer embedding tells them apart); one
latent per rank component, whose head emits a row of A and a column of B. Per-rank
scalers start at zero, so a fresh hypernetwork changes nothing. A learned
context-independent bias adapter is added once wherever adapters are applied.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from reverie.hypernet.lora import Factors


@dataclass
class HyperConfig:
    """Shape of a hypernetwork and the base model it was built for."""

    n_layers: int
    """Base model layers (one adapter per layer and target)."""
    d_model: int
    """Base model hidden size (the width of the activations read)."""
    targets: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Target module name inside a layer -> (d_in, d_out), e.g. ``mlp.down_proj``."""
    rank: int = 8
    """LoRA rank emitted per document (per chunk)."""
    bias_rank: int = 4
    """Rank of the learned context-independent bias adapter."""
    latent_dim: int = 256
    """Perceiver width."""
    n_blocks: int = 2
    """Perceiver blocks (cross-attention, then self-attention, each with an MLP)."""
    n_heads: int = 4
    """Attention heads in the Perceiver."""
    lora_alpha: float = 8.0
    """LoRA scale numerator: the delta is (alpha / rank) * B @ A."""
    pointer: bool = True
    """Add a copy path to B: each latent points at document tokens and writes their
    (normed) input embeddings, so writing a value token needs no learned re-encoding."""
    pointer_a: bool = False
    """Add a key path to A: each latent also points at document tokens and uses the target
    module's own *inputs* there as the row of A, so a rank component fires on activations
    like those the document produced (a name, a phrase) without a learned re-encoding."""
    base_fingerprint: str = ""
    """Identifies the base model (architecture and weights) the hypernetwork reads."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> HyperConfig:
        d = json.loads(s)
        d["targets"] = {k: tuple(v) for k, v in d["targets"].items()}
        return cls(**d)


class Block(nn.Module):
    """Pre-norm attention (cross or self) followed by an MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.nq, self.nkv, self.nm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, z: torch.Tensor, kv: torch.Tensor | None = None,
                pad: torch.Tensor | None = None) -> torch.Tensor:
        q = self.nq(z)
        k = q if kv is None else self.nkv(kv)
        z = z + self.attn(q, k, k, key_padding_mask=pad, need_weights=False)[0]
        return z + self.mlp(self.nm(z))

    def cross_attend(self, z: torch.Tensor, kv: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` with ``kv``, the same function computed for few latents over many
        tokens: the key and value projections move to the latents' side. Scores are
        (q Wk_h) . k (k's bias adds a constant per row, which softmax drops) and values are
        (P k) Wv_h^T + bv_h (each row of P sums to 1), so no (tokens x width x width) product is
        formed. With 8 latents over 30 layers x 512 tokens this is most of the hypernetwork's
        time saved (nn.MultiheadAttention has no such path: it projects every token)."""
        a = self.attn
        B, M, D = z.shape
        h = a.num_heads
        dh = D // h
        wq, wk, wv = a.in_proj_weight.chunk(3)  # each (D, D)
        bq, _, bv = a.in_proj_bias.chunk(3)  # type: ignore[union-attr]
        k = self.nkv(kv)  # (B, T, D)
        q = (self.nq(z) @ wq.T + bq).reshape(B, M, h, dh)  # (B, M, h, dh)
        qk = torch.einsum("bmhe,hed->bhmd", q, wk.reshape(h, dh, D)) / dh ** 0.5  # (B, h, M, D)
        att = torch.einsum("bhmd,btd->bhmt", qk, k)  # (B, h, M, T)
        if pad is not None:
            att = att.masked_fill(pad[:, None, None, :], float("-inf"))
        pk = torch.einsum("bhmt,btd->bhmd", att.softmax(-1), k)  # (B, h, M, D)
        o = torch.einsum("bhmd,hed->bmhe", pk, wv.reshape(h, dh, D)) + bv.reshape(h, dh)  # (B, M, h, dh)
        z = z + a.out_proj(o.reshape(B, M, D))
        return z + self.mlp(self.nm(z))


class HyperNetwork(nn.Module):
    """Document activations -> LoRA factors for every (layer, target)."""

    def __init__(self, cfg: HyperConfig):
        super().__init__()
        self.cfg = cfg
        D, L, r = cfg.latent_dim, cfg.n_layers, cfg.rank
        self.names = list(cfg.targets)
        nt = len(self.names)
        self.inp = nn.Sequential(nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, D))
        self.latents = nn.Parameter(torch.randn(nt * r, D) * 0.02)  # (M, D), M = targets x rank
        self.layer_emb = nn.Parameter(torch.randn(L, 1, D) * 0.02)
        self.cross = nn.ModuleList(Block(D, cfg.n_heads) for _ in range(cfg.n_blocks))
        self.selfs = nn.ModuleList(Block(D, cfg.n_heads) for _ in range(cfg.n_blocks))
        self.out_norm = nn.LayerNorm(D)
        self.head_a = nn.ModuleDict({_key(t): nn.Linear(D, cfg.targets[t][0]) for t in self.names})
        self.head_b = nn.ModuleDict({_key(t): nn.Linear(D, cfg.targets[t][1]) for t in self.names})
        # Per-rank scalers, zero at start: a fresh hypernetwork emits a zero delta.
        self.scale = nn.Parameter(torch.zeros(L, nt, r))
        if cfg.pointer:
            self.ptr_q = nn.Linear(D, D)
            self.ptr_k = nn.Linear(D, D)
            self.ptr_out = nn.ModuleDict({_key(t): nn.Linear(cfg.d_model, cfg.targets[t][1]) for t in self.names})
            for lin in self.ptr_out.values():  # start as a copy: write the pointed-at embedding itself
                assert isinstance(lin, nn.Linear)
                if lin.in_features == lin.out_features:
                    nn.init.eye_(lin.weight)
                    nn.init.zeros_(lin.bias)
        if cfg.pointer_a:
            self.key_q = nn.Linear(D, D)
            self.key_k = nn.Linear(D, D)
            self.key_mix = nn.Parameter(torch.zeros(len(self.names)))  # learned share of the head's own A
        self.folded = True
        """Cross-attention and pointer scores with the token projections moved to the latents'
        side (:meth:`Block.cross_attend`); False: the plain computation, the same function (tests)."""
        self.bias_a = nn.ParameterDict({_key(t): nn.Parameter(torch.randn(L, cfg.bias_rank, cfg.targets[t][0]) * 0.02) for t in self.names})
        self.bias_b = nn.ParameterDict({_key(t): nn.Parameter(torch.zeros(L, cfg.targets[t][1], cfg.bias_rank)) for t in self.names})

    def forward(self, hidden: torch.Tensor, pad: torch.Tensor | None = None,
                inputs: dict[str, torch.Tensor] | None = None) -> tuple[Factors, Factors]:
        """``hidden``: (N, L, T, d) activations entering each layer, ``pad``: (N, T) True at padding,
        ``inputs``: {target: (N, L, T, d_in)} what each target module received over the document
        (needed with ``pointer_a``).

        Returns the documents' factors ``{target: (A (N, L, r, d_in), B (N, L, d_out, r))}``
        and the bias adapter (see :meth:`bias`); both come out of forward so that DDP
        synchronises the bias's gradients too.
        """
        N, L, T, _ = hidden.shape
        r = self.cfg.rank
        x = self.inp(hidden).reshape(N * L, T, -1)  # (N*L, T, D)
        kpad = None if pad is None else pad.repeat_interleave(L, 0)  # (N*L, T)
        z = (self.latents[None] + self.layer_emb.repeat(N, 1, 1)).reshape(N * L, -1, x.shape[-1])  # (N*L, M, D)
        for cb, sb in zip(self.cross, self.selfs, strict=True):
            assert isinstance(cb, Block)
            z = sb(cb.cross_attend(z, x, kpad) if self.folded else cb(z, x, kpad))
        z = self.out_norm(z)  # (N*L, M, D)
        ptr = None
        if self.cfg.pointer:
            att = _scores(self.ptr_q(z), self.ptr_k, x, kpad, self.folded)  # (N*L, M, T)
            emb = hidden[:, 0]  # (N, T, d): layer-0 input, the token embeddings
            ptr = torch.einsum("nlmt,ntd->nlmd", att.softmax(-1).reshape(N, L, -1, T), emb)  # (N, L, M, d)
            ptr = ptr.reshape(N, L, len(self.names), r, -1)  # (N, L, nt, r, d)
        keys = None
        if self.cfg.pointer_a:
            if inputs is None:
                raise ValueError("this hypernetwork points at target inputs: pass inputs=")
            katt = _scores(self.key_q(z), self.key_k, x, kpad, self.folded)  # (N*L, M, T)
            keys = katt.softmax(-1).reshape(N, L, len(self.names), r, T)  # (N, L, nt, r, T)
        z = z.reshape(N, L, len(self.names), r, -1)  # (N, L, nt, r, D)
        out = {}
        for i, t in enumerate(self.names):
            zi = z[:, :, i]  # (N, L, r, D)
            a = self.head_a[_key(t)](zi)  # (N, L, r, d_in)
            a = F.normalize(a, dim=-1)  # unit rows: the scalers alone set the magnitude
            if keys is not None and inputs is not None:
                ka = F.normalize(keys[:, :, i] @ inputs[t], dim=-1)  # (N, L, r, d_in)
                a = F.normalize(ka + torch.sigmoid(self.key_mix[i] - 2.0) * a, dim=-1)
            b = self.head_b[_key(t)](zi)  # (N, L, r, d_out)
            if ptr is not None:
                b = b + self.ptr_out[_key(t)](ptr[:, :, i])
            b = b.transpose(-1, -2)  # (N, L, d_out, r)
            b = b * self.scale[None, :, i, None, :]  # (N, L, d_out, r)
            out[t] = (a, b)
        return out, self.bias()

    @property
    def key_targets(self) -> tuple[str, ...]:
        """Targets whose inputs over the document :meth:`forward` needs."""
        return tuple(self.names) if self.cfg.pointer_a else ()

    def bias(self) -> Factors:
        """The context-independent bias adapter: {target: (A (L, rb, d_in), B (L, d_out, rb))}."""
        return {t: (self.bias_a[_key(t)], self.bias_b[_key(t)]) for t in self.names}


def _scores(q: torch.Tensor, key: nn.Linear, x: torch.Tensor, pad: torch.Tensor | None, folded: bool = True) -> torch.Tensor:
    """Attention logits q . key(x) / sqrt(D) with padding masked, for q (B, M, D) and x (B, T, D):
    (B, M, T). ``folded``: computed as (q Wk) . x, since key's bias adds a constant per row
    that softmax drops (M latents are far fewer than T tokens; see :meth:`Block.cross_attend`)."""
    k = x if folded else key(x)
    att = torch.einsum("bmd,btd->bmt", q @ key.weight if folded else q, k) / x.shape[-1] ** 0.5
    return att if pad is None else att.masked_fill(pad[:, None, :], float("-inf"))


def _key(target: str) -> str:
    return target.replace(".", "__")


def fingerprint(model: nn.Module) -> str:
    """A short hash of a base model's config and a sample of its weights."""
    skip = ("dtype", "_name_or_path", "transformers_version", "architectures", "use_cache")
    config: Any = model.config  # a transformers PretrainedConfig
    cfg = {k: v for k, v in config.to_dict().items() if not any(s in k for s in skip)}
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, p in list(model.named_parameters())[:4]:
        h.update(name.encode())
        # Rounded to float16 so the same weights stored in another precision still match.
        h.update(p.detach().flatten()[:256].to(torch.float16).float().numpy().tobytes())
    return h.hexdigest()[:16]
