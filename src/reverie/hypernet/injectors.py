"""Injectors: one interface, several ways to turn a document into a weight delta.

A new injector is one class with the :func:`register` decorator.
"""

from __future__ import annotations

import functools
import hashlib
import time
from abc import ABC, abstractmethod
from typing import Any

import torch

from reverie.base.model import IGNORE, BaseModel, decode_input, native_bf16, pad_rows
from reverie.errors import InputError
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.fit import FitConfig, fit_batch
from reverie.hypernet.lora import layer_prefix
from reverie.hypernet.model import HyperNetwork
from reverie.utils import registrar

INJECTORS: dict[str, type[Injector]] = {}


register = registrar(INJECTORS)


MAX_TEXT_BYTES = 1_000_000
"""Largest document or observation accepted (1 MB): far past what the hypernetwork reads
(its window, or a few windows once long documents are chunked), small enough that a
buffer or ledger never holds a runaway input."""


READ_DTYPES = ("float32", "bfloat16", "auto")


def check_text(text: str | bytes) -> str:
    n = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", errors="replace"))
    if n > MAX_TEXT_BYTES:
        raise InputError(f"document of {n / 1e6:.1f} MB is over the {MAX_TEXT_BYTES / 1e6:.0f} MB limit: split it into smaller texts")
    text = decode_input(text)
    if not text.strip():
        raise InputError("empty document: nothing to inject")
    return text


class Injector(ABC):
    """Turns documents into :class:`Adapter` s for one base model."""

    name = "?"
    fits_probes = False
    """Whether adapters are fitted to the probes given to :meth:`inject_probed` (a sleep then
    has nothing to repair)."""

    def __init__(self, bm: BaseModel):
        self.bm = bm

    @abstractmethod
    def inject_many(self, texts: list[str], queries: list[list[str]] | None = None) -> list[Adapter]:
        """One adapter per document. ``queries`` optionally lists probe questions per document."""

    def inject(self, text: str | bytes, queries: list[str] | None = None) -> Adapter:
        return self.inject_many([check_text(text)], None if queries is None else [queries])[0]

    def inject_probed(self, texts: list[str], probes: list[list[Any]], bases: list[Any] | None = None) -> list[Adapter]:
        """One adapter per text, given the probes a sleep already asked of each (question,
        answer, key records: ``reverie.sleep.probe.Probe``). An injector that learns from
        probes uses them; ``bases``: per text, None or an adapter's factors (scale folded
        in) that the new one is learned on top of and includes. The default reads the
        texts alone."""
        return self.inject_many(texts)

    def target_names(self) -> tuple[str, ...]:
        """The modules (inside each layer) this injector's adapters touch."""
        return tuple(getattr(self, "targets", ("mlp.down_proj",)))

    def _meta(self, text: str, t0: float) -> dict:
        return {"injector": self.name, "source_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "inject_s": round(time.perf_counter() - t0, 5)}


@register("hyper")
class HyperInjector(Injector):
    """The learned hypernetwork: one forward pass of the base model and the Perceiver."""

    def __init__(self, bm: BaseModel, hyper: HyperNetwork, batch: int = 16, combine: str = "concat",
                 chunk_tokens: int | None = None, read_dtype: str = "float32"):
        super().__init__(bm)
        if read_dtype not in READ_DTYPES:
            raise InputError(f"unknown reading precision {read_dtype!r}: one of {', '.join(READ_DTYPES)}")
        self.read_dtype = read_dtype
        """Precision of the backbone's pass over the document: ``float32`` (what every shipped
        hypernetwork was trained on), ``bfloat16`` (autocast), or ``auto``: bfloat16 where
        the device multiplies in it natively (a CPU with AVX-512 BF16 or AMX, a GPU that
        supports it), else float32. The hypernetwork itself always runs in float32."""
        self.hyper = hyper.eval()
        self.scale = hyper.cfg.lora_alpha / hyper.cfg.rank
        self.batch = batch
        self.combine = combine
        """How a long document's chunk adapters are combined (see ``hypernet.chunks``)."""
        self.chunk_tokens = chunk_tokens
        """Largest chunk in tokens (default: the window, less the reading prefix)."""

    def target_names(self) -> tuple[str, ...]:
        return tuple(self.hyper.cfg.targets)

    @property
    def reading_dtype(self) -> torch.dtype:
        """``read_dtype`` resolved for the device the base model is on."""
        if self.read_dtype == "auto":
            return torch.bfloat16 if native_bf16(next(self.bm.model.parameters()).device) else torch.float32
        return torch.bfloat16 if self.read_dtype == "bfloat16" else torch.float32

    @property
    def reading_name(self) -> str:
        """``reading_dtype`` as adapters and benchmarks record it: float32 or bfloat16."""
        return str(self.reading_dtype).removeprefix("torch.")

    def n_tokens(self, text: str) -> int:
        return len(self.bm.tokenizer.encode(text, add_special_tokens=False))

    @functools.cached_property
    def limit(self) -> int:
        overhead = len(self.bm.encode(self.bm.format.document(""))) + 2
        return min(self.chunk_tokens or self.bm.max_length, self.bm.max_length - overhead)

    def chunks(self, text: str) -> list[str]:
        """``text`` itself if it fits the window, else its chunks."""
        from reverie.hypernet.chunks import split_chunks

        # A token covers at least one byte: a short text needs no tokenizing here.
        if len(text.encode("utf-8")) <= self.limit or self.n_tokens(text) <= self.limit:
            return [text]
        return split_chunks(text, self.n_tokens, self.limit)

    def inject_many(self, texts: list[str], queries: list[list[str]] | None = None) -> list[Adapter]:
        from reverie.hypernet.chunks import combine

        texts = [check_text(t) for t in texts]
        pieces, owner = [], []
        for i, text in enumerate(texts):
            cs = self.chunks(text)
            pieces += cs
            owner += [i] * len(cs)
        t0 = time.perf_counter()
        ads = self._read(pieces)
        out = []
        for i, text in enumerate(texts):
            mine = [a for a, o in zip(ads, owner, strict=True) if o == i]
            if len(mine) == 1:
                out.append(mine[0])
                continue
            ad = combine(mine, self.combine, self.hyper.cfg.rank)
            ad.meta |= self._meta(text, t0)
            out.append(ad)
        return out

    @torch.no_grad()
    def _read(self, texts: list[str]) -> list[Adapter]:
        from reverie.hypernet.reading import read_docs

        out = []
        dtype, meta_read = self.reading_dtype, {"bias_rank": self.hyper.cfg.bias_rank, "read_dtype": self.reading_name}
        # A few documents per forward: the activations read (and the target inputs kept
        # for the key path) grow as documents x layers x tokens x width, gigabytes for a
        # hundred real passages at once.
        for k in range(0, len(texts), self.batch):
            chunk = texts[k : k + self.batch]
            t0 = time.perf_counter()
            hidden, pad, ins = read_docs(self.bm, chunk, self.hyper.key_targets, dtype)
            f, bias = self.hyper(hidden, pad, ins)
            for i, text in enumerate(chunk):
                fac = {t: (torch.cat([A[i], bias[t][0]], -2).clone(), torch.cat([B[i], bias[t][1]], -1).clone())
                       for t, (A, B) in f.items()}
                out.append(Adapter(fac, self.scale, layer_prefix(self.bm.model), self._meta(text, t0) | meta_read))
        return out


@register("distill")
class DistillInjector(Injector):
    """Gradient context distillation: a per-document LoRA fitted by AdamW steps so the model
    without the document matches itself with the document in context (the slow, strong
    baseline). Probe questions come from ``queries``; their answers are the model's own
    greedy answers with the document in context (self-generated, as Doc-to-LoRA does).
    Without queries it fits the document text itself (plain next-token loss)."""

    def __init__(self, bm: BaseModel, rank: int = 8, steps: int = 300, lr: float = 5e-3,
                 targets: tuple[str, ...] = ("mlp.down_proj",), alpha: float = 8.0):
        super().__init__(bm)
        self.rank, self.steps, self.lr, self.targets, self.alpha = rank, steps, lr, targets, alpha

    def inject_many(self, texts: list[str], queries: list[list[str]] | None = None) -> list[Adapter]:
        return [self._one(check_text(t), None if queries is None else queries[i]) for i, t in enumerate(texts)]

    def _rows(self, text: str, queries: list[str] | None) -> tuple[list[list[int]], list[list[int]], torch.Tensor | None]:
        bm = self.bm
        enc = lambda s: bm.tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
        if not queries:
            ids = bm.encode(text)[: bm.max_length]
            return [ids], [[IGNORE] + ids[1:]], None
        answers = bm.answer_batch([bm.prompt(q, text) for q in queries])
        s_ids, s_lab, t_rows = [], [], []
        for q, a in zip(queries, answers, strict=True):
            qi, ai = bm.encode(bm.format.closed(q)), enc(bm.format.answer(a))
            s_ids.append(qi + ai)
            s_lab.append([IGNORE] * len(qi) + ai)
            t_rows.append((bm.encode(bm.format.context(text, q)) + ai)[-bm.max_length:])
        with torch.no_grad():
            t_logits = [bm.model(torch.tensor([t])).logits[0, -len(s) : -1] for t, s in zip(t_rows, s_ids, strict=True)]
        # Teacher logits predicting each answer token (aligned with the student's labels).
        teacher = torch.cat([tl[-(sum(x != IGNORE for x in lab)) :] for tl, lab in zip(t_logits, s_lab, strict=True)])
        return s_ids, s_lab, teacher

    def _one(self, text: str, queries: list[str] | None) -> Adapter:
        bm = self.bm
        t0 = time.perf_counter()
        ids_l, lab_l, teacher = self._rows(text, queries)
        ids, lab, mask = pad_rows(list(zip(ids_l, lab_l, strict=True)), int(bm.tokenizer.pad_token_id))  # (N, T) each
        # Every layer, a fixed number of float32 steps (no early stop): the slow, strong baseline.
        cfg = FitConfig(layers=None, rank=self.rank, alpha=self.alpha, targets=self.targets,
                        steps=self.steps, lr=self.lr, stop_loss=0.0, dtype="float32", seed=0)
        ad = fit_batch(bm, ids, lab, mask, cfg, teacher=teacher)
        ad.meta = self._meta(text, t0) | {"steps": self.steps, "final_loss": ad.meta["final_loss"]}
        return ad
