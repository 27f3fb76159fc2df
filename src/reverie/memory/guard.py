"""The interference guard: measure what an update does to what the model already knew,
and scale it down or refuse it when it does too much.

The probe set is fixed per seed: closed-book questions about base-population people (what
the model knew before reading anything), in-context QA on fresh documents (its reading
skill), and a few unrelated prompts. Answers are the base model's greedy answers; an
update is measured teacher-forced on them (one batched forward pass): the KL of the
answer tokens' distributions to those before the update, and the fraction of probes whose
greedy answer would change (any answer token whose argmax moves).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from reverie.base.data import logits_at
from reverie.base.model import IGNORE, BaseModel
from reverie.world import ATTRIBUTES, World
from reverie.world.generator import rng


@dataclass
class GuardConfig:
    """Probe set and budget of the interference guard."""

    n_closed: int = 24
    """Closed-book probes on base-population people."""
    n_context: int = 8
    """In-context probes on fresh documents."""
    max_changed: float = 0.04
    """Largest fraction of probes whose answer one update may change."""
    max_kl: float = 0.05
    """Largest mean KL (nats per answer token) one update may cause on the probes."""
    shrink: float = 0.5
    """Factor applied to an update over budget before measuring again."""
    max_drift: float = 0.05
    """Largest fraction of probes whose answer may differ from the *base* model's, all
    updates together: bounds cumulative interference (once spent, updates are refused)."""
    tries: int = 3
    """Measurements before an update is refused."""
    seed: int = 12345
    """Seeds the probe set."""


class Guard:
    """Measures updates against a fixed probe set (built once per base model and world)."""

    def __init__(self, bm: BaseModel, world: World, cfg: GuardConfig | None = None):
        self.bm, self.cfg = bm, cfg or GuardConfig()
        r = rng(self.cfg.seed, "guard")
        rows = []
        for p in r.sample(world.base, self.cfg.n_closed):
            q = world.question(p, r.choice(ATTRIBUTES), r)
            rows.append(("", q.question))
        fresh = world.skill_people(r.getrandbits(31))
        for _ in range(self.cfg.n_context):
            p = next(fresh)
            q = world.question(p, r.choice(ATTRIBUTES), r)
            rows.append((world.biography(p, r), q.question))
        answers = bm.answer_batch([bm.prompt(q, d or None) for d, q in rows])
        self.questions = [q for _, q in rows]
        """The probe questions (a bank item is measured only if one of them routes to it)."""
        # Scored in the model's own prompt format: the prompts it answered above.
        self.ids, self.lab, self.mask = bm.qa_rows([(d or None, q, a) for (d, q), a in zip(rows, answers, strict=True)])
        tgt = self.lab[:, 1:]
        self.row = torch.arange(len(self.ids))[:, None].expand_as(tgt)[tgt != IGNORE]  # (K,) which probe each answer token is
        self.base = self._answer_logits()  # the guard is built on the base model, before any memory
        self.seconds = 0.0
        """Total time spent measuring (the guard's cost)."""

    @torch.no_grad()
    def _answer_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.bm.model(self.ids, attention_mask=self.mask).logits  # (N, T, V)
        return logits_at(logits, self.lab)[0], self.row

    def reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The probes' answer logits as the model stands now (before an update)."""
        t0 = time.perf_counter()
        out = self._answer_logits()
        self.seconds += time.perf_counter() - t0
        return out

    def measure(self, ref: tuple[torch.Tensor, torch.Tensor]) -> tuple[dict[str, float], tuple[torch.Tensor, torch.Tensor]]:
        """Effect of whatever has changed in the model since ``ref`` was taken, and the
        probes' logits now (the reference for the next update if this one is kept)."""
        t0 = time.perf_counter()
        now, row = self._answer_logits()
        before, _ = ref
        kl = F.kl_div(F.log_softmax(now, -1), F.log_softmax(before, -1), log_target=True, reduction="batchmean")
        self.seconds += time.perf_counter() - t0
        return ({"kl": round(float(kl), 5), "changed": self._moved(now, before, row),
                 "drift": self._moved(now, self.base[0], row)}, (now, row))

    def _moved(self, now: torch.Tensor, before: torch.Tensor, row: torch.Tensor) -> float:
        moved = (now.argmax(-1) != before.argmax(-1)).float()
        return round(float(torch.zeros(len(self.ids)).index_add_(0, row, moved).gt(0).float().mean()), 4)

    def fits(self, m: dict[str, float], drift_only: bool = False) -> bool:
        """Within budget. ``drift_only``: judge on the distance from the base model alone
        (for a consolidation step such as replay, large by design and fitted to keep it)."""
        if drift_only:
            return m["drift"] <= self.cfg.max_drift
        return m["changed"] <= self.cfg.max_changed and m["kl"] <= self.cfg.max_kl and m["drift"] <= self.cfg.max_drift

    def config(self) -> dict:
        return asdict(self.cfg)
