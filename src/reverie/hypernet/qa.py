"""Questions answered under injected adapters: each row of a generation batch carries the
adapter of the document its question is about (the plain and in-context asking is
:mod:`reverie.base.qa`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from reverie.base.model import BaseModel, Generation
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.lora import Factors, applied


class Asked(Protocol):
    """What :func:`ask_injected` needs of a question: its text and whose adapter answers it."""

    @property
    def person(self) -> str: ...

    @property
    def question(self) -> str: ...


def ask_injected(bm: BaseModel, qas: Sequence[Asked], adapters: dict[str, Adapter],
                 gen: Generation | None = None, contexts: Sequence[str | None] | None = None) -> list[str]:
    """Greedy answers, each question under the adapter of ``adapters[qa.person]`` (rows of one
    generation batch may carry different adapters, applied per row); no context unless
    ``contexts`` gives one per question."""
    gen = gen or Generation()
    keys = [q.person for q in qas]
    out: list[str] = []
    for i in range(0, len(qas), gen.batch_size):
        chunk = qas[i : i + gen.batch_size]
        fac = stack_adapters([adapters[k] for k in keys[i : i + gen.batch_size]])
        with applied(bm.model, fac, 1.0):
            ctx = [None] * len(chunk) if contexts is None else contexts[i : i + gen.batch_size]
            out += bm.answer_batch([bm.prompt(q.question, c) for q, c in zip(chunk, ctx, strict=True)],
                                   Generation(gen.max_new_tokens, len(chunk)))
    return out


def stack_adapters(ads: Sequence[Adapter]) -> Factors:
    """Per-row factors for a batch of adapters (scale folded into B; ranks zero-padded to the
    largest, since a long document's combined adapter may carry more ranks)."""
    rmax = max(a.rank for a in ads)
    out = {}
    for t in ads[0].factors:
        As, Bs = [], []
        for a in ads:
            A, B = a.factors[t]
            pad = rmax - A.shape[-2]
            As.append(torch.nn.functional.pad(A, (0, 0, 0, pad)))  # (L, rmax, d_in)
            Bs.append(torch.nn.functional.pad(B * a.scale, (0, pad)))  # (L, d_out, rmax)
        out[t] = (torch.stack(As), torch.stack(Bs))
    return out
