"""Sleep-time learning for any causal LM: the ``learn`` injector.

A text's probes (:mod:`reverie.sleep.probe`: echo questions and cloze prompts answered
with the text's own sentences, "What do you know about X?" and a summary answered by the
model itself with the text in context) become rows, and a LoRA on the model's top layers
is fitted to them by gradient steps (:func:`reverie.hypernet.fit.fit_rows`), so that the
model, with the text gone from its context, answers as the text says. Minutes a night on
two CPU cores; no trained hypernetwork needed. Where one exists, its adapter is the warm
start (``warm``), and the adapter records the steps the fit took.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace

from reverie.base.model import BaseModel
from reverie.errors import InputError
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.fit import FitConfig, fit_rows, stacked
from reverie.hypernet.injectors import HyperInjector, Injector, check_text, register
from reverie.hypernet.lora import Factors, applied
from reverie.sleep.probe import PROBERS, Probe, default_prober

REVISE_STEPS = 30
"""Most AdamW steps of a revision's correction."""
REVISE_LR = 3e-3
"""Learning rate of a revision's correction. On three dev biographies and their job changes
(own questions right before / after the revision, job-change questions right): 1e-2 gave
7 / 2 and 1 of 3; 3e-3 for 15 steps 7 / 4 and 0 of 3; 3e-3 for 30 steps 7 / 3 and 1 of 3."""


@register("learn")
class LearnInjector(Injector):
    """Probes a text and fits a LoRA on the top layers until the probes are answered
    (see the module notes)."""

    fits_probes = True

    def __init__(self, bm: BaseModel, cfg: FitConfig | None = None, prober: str | None = None,
                 warm: HyperInjector | None = None, progress: Callable[[int, int, int, float], None] | None = None):
        super().__init__(bm)
        self.cfg = cfg or FitConfig()
        self.prober = prober or default_prober(bm)
        if self.prober not in PROBERS:
            raise InputError(f"unknown prober {self.prober!r} (known: {', '.join(PROBERS)})")
        if warm is not None and (warm.hyper.cfg.rank != self.cfg.rank or set(warm.target_names()) != set(self.cfg.targets)):
            raise InputError(f"warm start needs a hypernetwork of rank {self.cfg.rank} on {', '.join(self.cfg.targets)}")
        self.warm = warm
        """A hypernetwork whose adapter (its document ranks) starts each fit."""
        self.progress = progress
        """Called with (text index, texts, step, loss) after every step of a fit."""
        self.correction = replace(self.cfg, steps=REVISE_STEPS, lr=REVISE_LR)
        """How a correction on top of an existing adapter is fitted (a revision: see
        ``reverie.sleep.revise``): gentler than a fresh fit, which would unsettle what the
        adapter answers to questions its probes do not ask."""

    def target_names(self) -> tuple[str, ...]:
        return tuple(self.cfg.targets)

    def probe(self, texts: list[str], queries: list[list[str]] | None = None) -> list[list[Probe]]:
        """Each text's probes; ``queries``: more questions per text, answered with the text in context."""
        prober = PROBERS[self.prober]()
        probes = prober.probe(self.bm, texts)
        if queries:
            asked = prober.answer(self.bm, texts, [[(q, f"query|{q}") for q in qs] for qs in queries])
            probes = [ps + more for ps, more in zip(probes, asked, strict=True)]
        return probes

    def inject_many(self, texts: list[str], queries: list[list[str]] | None = None) -> list[Adapter]:
        texts = [check_text(t) for t in texts]
        return self.inject_probed(texts, self.probe(texts, queries))

    def inject_probed(self, texts: list[str], probes: list[list[Probe]], bases: list[Factors | None] | None = None) -> list[Adapter]:
        out = []
        inits = self.warm.inject_many(texts) if self.warm is not None else [None] * len(texts)
        for k, (text, ps, init, base) in enumerate(zip(texts, probes, inits, bases or [None] * len(texts), strict=True)):
            t0 = time.perf_counter()
            rows = [(p.question, p.answer) for p in ps if p.answer.strip()]
            if not rows:
                raise InputError("nothing to learn: the text states nothing the prober could ask about")
            tick = None if self.progress is None else functools.partial(self.progress, k, len(texts))
            if base is None:
                ad = fit_rows(self.bm, rows, self.cfg, None if init is None else init.parts()[0], tick)
            else:  # a correction fitted with the base applied, then stacked onto it
                with applied(self.bm.model, base, 1.0):
                    ad = stacked(base, fit_rows(self.bm, rows, self.correction, None, tick))
            ad.meta |= self._meta(text, t0) | {"prober": self.prober, "warm": init is not None}
            out.append(ad)
        return out


__all__ = ["LearnInjector"]
