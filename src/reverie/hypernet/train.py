"""Recipe: meta-train the hypernetwork (`reverie train hypernet`).

Student: the frozen base model plus the emitted adapter, no document in context.
Teacher: the same base model with the document in context. Loss on question-answer
tokens = KL(teacher || student) + ``ce`` x cross-entropy on gold answers. To make adapters
*compose* and stay *local* (the single-document trap in docs/design.md), each step groups
documents whose adapters are summed (rank-concatenated) and asks about every person in
the group, and adds a KL-to-base term on questions about people not in the group.
Runs single-process, or multi-process with torchrun (DDP over gloo on CPU).
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from reverie.base.data import IGNORE, Segmenter, logits_at
from reverie.base.model import DEFAULT_MODEL_DIR, BaseModel, Generation, pad_rows
from reverie.base.prompt import document_prefix
from reverie.base.qa import ask, documents, sample_questions, score, skill_validation
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.injectors import HyperInjector
from reverie.hypernet.lora import applied, concat
from reverie.hypernet.model import HyperConfig, HyperNetwork, fingerprint
from reverie.hypernet.qa import ask_injected
from reverie.hypernet.reading import read_docs
from reverie.hypernet.store import build_config, resume_or_init, save_hypernet
from reverie.utils import (
    manifest_stages,
    progress,
    save_train_state,
    warmup_cosine,
)
from reverie.world import ATTRIBUTES, Person, World, WorldConfig
from reverie.world.generator import rng
from reverie.world.templates import NEEDLE_QUESTION


@dataclass
class HyperRecipe:
    """Everything that determines a trained hypernetwork (besides the base model)."""

    seed: int = 0
    """Seeds data order and initialisation."""
    steps: int = 4000
    """Optimizer steps (about 40 minutes on 2 cores)."""
    docs_per_step: int = 8
    """Documents read per step (split into groups whose adapters are summed)."""
    group_sizes: tuple[int, ...] = (1,)
    """Group sizes drawn per step: 1 trains single injection, larger ones composition.
    Mixing sizes from the start slowed single injection down by more than half (greedy
    accuracy 0.15 vs 0.33 after 300 steps), so composition is a later stage."""
    n_local: int = 4
    """Locality questions per group (base people and fresh people not in the group)."""
    lr: float = 1e-3
    """Peak learning rate (AdamW, warm-up then cosine to 10%)."""
    warmup: int = 100
    """Warm-up steps."""
    ce: float = 0.2
    """Weight of cross-entropy on gold answers (next to the KL to the teacher)."""
    local: float = 1.0
    """Weight of the KL-to-base term on questions about people not injected."""
    local_own: bool = False
    """Locality rows continue with the base model's own greedy answer instead of the gold
    one. With gold answers a stranger's row (which an abstaining base answers "I don't
    know") constrained only the first answer token: every later position followed gold
    digits the base never says, and bench qa's locality flips were "I don't know" -> "I6"."""
    local_margin: float = 0.0
    """Weight of a hinge on the locality rows: wherever the base model's greedy token is the
    row's label, the adapted model's logit margin for it (over the runner-up) may not fall
    below the base model's own margin (capped at ``MARGIN_CAP``). The KL term barely sees a
    small shift at a position whose margin is thin, yet that shift flips the greedy answer:
    bench qa's remaining locality flips were such answers ("I don't know" -> a guess, a base
    person's fact -> "I don't know")."""
    local_mine: int = 0
    """Candidate questions about base people drawn per group for mined locality rows (0:
    none). Each step scores them under the group's adapter (no gradient) and adds the
    ``mine_keep`` whose answer margin falls most to the locality rows. The flips random rows
    left were one person's adapter suppressing a few particular base people's recall (a
    2.8-logit lead falling 2.0), which 2-4 random base people per group rarely hit."""
    mine_keep: int = 2
    """Mined locality rows kept per group (with ``local_mine``)."""
    mine_strangers: bool = False
    """Half the mined candidates are fresh people the base model abstains about, not base
    people."""
    local_bias: float = 0.0
    """Weight of the locality term (KL to base plus the margin hinge) on the locality rows
    with the context-independent bias adapter alone (0: off). The bias is the adapters'
    switch from "I don't know" to answering (a hypernetwork trained without it answered 0.08 of the questions), and
    it acts on every name: alone it flipped 16 of bench qa's 1200 locality prompts at 200
    people, 12 of them among the full adapters' 24 flips (base people recalled past an
    abstention, strangers with base-like names given facts). This asks the documents' components, which point at
    their names, to carry the switch instead."""
    bias_fade: int = 0
    """Steps over which the context-independent bias adapter fades out (its B scaled after
    each step so that it is 1 - step/N of what training made it, zero from step N on; 0:
    kept). The documents' components then have to carry the switch from "I don't know" to
    answering themselves, keyed on their own names, instead of fighting a bias that moves
    every prompt towards answering (see ``local_bias``)."""
    l1: float = 1e-3
    """L1 penalty on the emitted B factors."""
    shared: float = 0.0
    """Weight of the shared-component penalty: |mean of the step's document deltas|^2 over
    their mean |delta|^2 (1/N for unrelated deltas, 1 for identical ones). Without it the
    deltas of different documents came out nearly parallel (a memory's norm grew linearly
    with T), which the context-independent bias adapter should carry instead."""
    rank: int = 8
    """LoRA rank per document."""
    latent_dim: int = 256
    """Perceiver width."""
    n_blocks: int = 2
    """Perceiver blocks."""
    targets: tuple[str, ...] = ("mlp.down_proj",)
    """Target modules inside each layer."""
    pointer_a: bool = True
    """Rows of A point at the target's own inputs over the document (see HyperConfig);
    after 300 steps: greedy accuracy 0.33 with it, 0.15 without."""
    ckpt_every: int = 100
    """Steps between checkpoints."""
    eval_every: int = 400
    """Steps between monitoring evaluations."""
    monitor_people: int = 24
    """Fresh people injected at each monitoring evaluation."""
    p_needle: float = 0.0
    """Share of documents, on steps of single documents, that are haystack text with one
    "special magic number" sentence, asked for it (``reverie bench long``'s needle; the
    base model must read it in context: ``reverie train base --needle-from``)."""
    p_paraphrase: float = 0.0
    """Share of the documents' questions asked in another form than the four training
    templates: half from ``templates.QUESTIONS_PARAPHRASE``, half from
    ``templates.QUESTIONS_WHICH`` (the forms the base model's stages 4-5 read; never a held-out
    template). An adapter trained on four forms answered the base model's held-out forms
    worse than the base model reads them in context (birth date: 0.63 after injection, 1.00
    in context)."""


MARGIN_CAP = 2.0
"""Largest base-model margin (in logits) the locality hinge protects: past it a position is
in no danger of flipping and the KL term is enough."""


def margin(logits: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """Logit of ``tok`` over the largest other logit, per row: (K, V), (K,) -> (K,)."""
    own = logits.gather(-1, tok[:, None])[:, 0]
    rest = logits.scatter(-1, tok[:, None], float("-inf")).amax(-1)
    return own - rest


def margin_shortfall(student: torch.Tensor, base: torch.Tensor, tok: torch.Tensor, cap: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position: how far the student's margin for ``tok`` falls below the base model's
    (capped at ``cap``), and whether ``tok`` is the base model's greedy token there:
    (K, V), (K, V), (K,) -> (K,), (K,)."""
    return margin(base, tok).clamp(max=cap) - margin(student, tok), base.argmax(-1) == tok


def margin_hinge(student: torch.Tensor, base: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """Mean shortfall of the student's margin for ``tok`` below the base model's (capped at
    ``MARGIN_CAP``), over the positions where ``tok`` is the base model's greedy token."""
    short, keep = margin_shortfall(student, base, tok, MARGIN_CAP)
    if not keep.any():
        return student.sum() * 0.0
    return F.relu(short[keep]).mean()


MINE_CAP = 4.0
"""Base-model margin (logits) past which mined locality scores a position as safe: a fact
led by 15 logits that falls by 5 flips nothing, one led by 2.8 that falls by 2 nearly does."""


CALIBRATE = 50
"""Steps timed before ``max_seconds`` fixes the length of the run."""


def fade_bias(hyper: HyperNetwork, step: int, n: int) -> None:
    """After optimizer step ``step`` (1-based) of a fade over ``n`` steps: scale the bias
    adapter's B so that the fade's share goes from 1 - (step-1)/n to 1 - step/n."""
    keep = (n - step) / (n - step + 1) if step < n else 0.0  # (1 - step/n) / (1 - (step-1)/n)
    with torch.no_grad():
        for b in hyper.bias_b.values():
            b.mul_(keep)


def lr_at(step: int, rc: HyperRecipe) -> float:
    return warmup_cosine(step, rc.lr, rc.warmup, rc.steps)


class Step:
    """Builds one step's data and computes its loss; shared by training and tests."""

    def __init__(self, bm: BaseModel, hyper: HyperNetwork, world: World, rc: HyperRecipe):
        self.bm, self.hyper, self.world, self.rc = bm, hyper, world, rc
        self.seg = Segmenter(bm.tokenizer, world)
        self.scale = hyper.cfg.lora_alpha / hyper.cfg.rank
        self._own: dict[str, str] = {}  # question -> the base model's greedy answer (it is frozen)

    def own_answers(self, questions: list[str]) -> list[str]:
        """The base model's greedy answers, generated once per distinct question."""
        new = sorted({q for q in questions if q not in self._own})
        if new:
            got = self.bm.answer_batch([self.bm.prompt(q) for q in new], Generation(batch_size=len(new)))
            self._own.update(zip(new, got, strict=True))
        return [self._own[q] for q in questions]

    def _question(self, p: Person, attribute: str, r: random.Random) -> str:
        """A document question: a training template, or with ``p_paraphrase`` another form
        (no extra draw at 0, so a recipe without paraphrases draws the same data)."""
        if self.rc.p_paraphrase and r.random() < self.rc.p_paraphrase:
            return self.world.question(p, attribute, r, "which" if r.random() < 0.5 else "paraphrase").question
        return self.world.question(p, attribute, r).question

    def data(self, step: int, rank: int = 0) -> dict:
        r = rng(self.rc.seed, "hyper", str(step), str(rank))
        skill = self.world.skill_people(r.getrandbits(31))
        k = r.choice([g for g in self.rc.group_sizes if g <= self.rc.docs_per_step])
        groups = [[next(skill) for _ in range(k)] for _ in range(max(1, self.rc.docs_per_step // k))]
        people = [p for g in groups for p in g]
        docs = [self.world.biography(p, r) for p in people]
        # Needle documents stand in for some single documents (drawn only when p_needle > 0,
        # so a recipe without them sees the same data as before they existed).
        needles = {gi for gi in range(len(groups)) if k == 1 and self.rc.p_needle and r.random() < self.rc.p_needle}
        teacher, student, asked = [], [], []
        for gi, g in enumerate(groups):
            for p in g:
                if gi in needles:
                    doc, value = self.world.needle_haystack(r)
                    docs[gi] = doc
                    qas = [(NEEDLE_QUESTION, value)]
                else:
                    doc = docs[people.index(p)]
                    qas = [(self._question(p, a, r), p.attrs[a]) for a in r.sample(list(ATTRIBUTES), len(ATTRIBUTES))]
                # One teacher row per document with all its questions (the format the base
                # model was trained to read); answer tokens line up with the student rows.
                teacher.append(self.seg.qa(document_prefix(doc), qas))
                student += [(gi, self.seg.qa("", [qa])) for qa in qas]
            outsiders: list[Person] = [r.choice(self.world.base) for _ in range(self.rc.n_local // 2)]
            outsiders += [next(skill) for _ in range(self.rc.n_local - len(outsiders))]
            for p in outsiders:
                qa = self.world.question(p, r.choice(ATTRIBUTES), r)
                asked.append((gi, qa.question, qa.answer))
        if self.rc.local_own:
            # The base's answers without any adapter (no grad; the hypernetwork is not applied here).
            own = self.bm.answer_batch([self.bm.prompt(q) for _, q, _ in asked], Generation(batch_size=len(asked)))
            asked = [(gi, q, a) for (gi, q, _), a in zip(asked, own, strict=True)]
        local = [(gi, self.seg.qa("", [(q, a)])) for gi, q, a in asked]
        mine = []
        if self.rc.local_mine:
            # Its own stream, so the rows above are the ones a recipe without mining sees.
            rm = rng(self.rc.seed, "mine", str(step), str(rank))
            fresh = self.world.skill_people(rm.getrandbits(31))
            pick = lambda i: next(fresh) if self.rc.mine_strangers and i % 2 else rm.choice(self.world.base)  # noqa: E731
            cand = [(gi, self.world.question(pick(i), rm.choice(ATTRIBUTES), rm).question)
                    for gi in range(len(groups)) for i in range(self.rc.local_mine)]
            own = self.own_answers([q for _, q in cand])
            mine = [(gi, self.seg.qa("", [(q, a)])) for (gi, q), a in zip(cand, own, strict=True)]
        return {"groups": groups, "docs": docs, "teacher": teacher, "student": student, "local": local, "mine": mine}

    @torch.no_grad()
    def mined(self, d: dict, row_f: dict, pad_id: int) -> tuple[list, float]:
        """The ``mine_keep`` candidate rows per group nearest to flipping under the group's
        adapter, and their mean score (logged). A row's score is the largest shortfall, over
        its answer positions, of the adapted model's margin for the base model's greedy token
        below the base model's own margin capped at ``MINE_CAP``."""
        cand = d["mine"]
        if not cand:
            return [], 0.0
        gidx = torch.tensor([g for g, _ in cand])
        ids, lab, _ = pad_rows([s for _, s in cand], pad_id)
        with applied(self.bm.model, {t: (A[gidx], B[gidx]) for t, (A, B) in row_f.items()}, self.scale):
            s_log = self.bm.model(ids, attention_mask=(ids != pad_id).long()).logits[:, :-1]  # (R, T-1, V)
        b_log = self.bm.model(ids, attention_mask=(ids != pad_id).long()).logits[:, :-1]
        tgt = lab[:, 1:]  # (R, T-1)
        v = s_log.shape[-1]
        short, greedy = margin_shortfall(s_log.reshape(-1, v), b_log.reshape(-1, v), tgt.clamp_min(0).reshape(-1), MINE_CAP)
        keep_pos = (tgt != IGNORE) & greedy.reshape(tgt.shape)
        score = short.reshape(tgt.shape).masked_fill(~keep_pos, float("-inf")).amax(-1)  # (R,)
        keep, top = [], []
        for g in sorted({g for g, _ in cand}):
            idx = sorted((i for i, (gi, _) in enumerate(cand) if gi == g), key=lambda i: -float(score[i]))[: self.rc.mine_keep]
            keep += [cand[i] for i in idx]
            top += [float(score[i]) for i in idx if torch.isfinite(score[i])]
        return keep, sum(top) / max(1, len(top))

    def loss(self, d: dict) -> tuple[torch.Tensor, dict]:
        bm, pad_id = self.bm, self.bm.tokenizer.pad_token_id
        hidden, pad, ins = read_docs(bm, d["docs"], self.hyper.key_targets)
        f, bias = self.hyper(hidden, pad, ins)  # {t: (A (N, L, r, d_in), B (N, L, d_out, r))}, bias
        n_groups = len(d["groups"])
        k = len(d["groups"][0])
        per_group = {t: (A.reshape(n_groups, k, *A.shape[1:]), B.reshape(n_groups, k, *B.shape[1:])) for t, (A, B) in f.items()}
        grouped = concat([{t: (per_group[t][0][:, j], per_group[t][1][:, j]) for t in f} for j in range(k)]
                         + [{t: (a[None].expand(n_groups, -1, -1, -1), b[None].expand(n_groups, -1, -1, -1)) for t, (a, b) in bias.items()}])
        mined, mine_drop = self.mined(d, {t: (A.detach(), B.detach()) for t, (A, B) in grouped.items()}, pad_id)
        rows = d["student"] + d["local"] + mined
        gidx = torch.tensor([g for g, _ in rows])
        ids, lab, _ = pad_rows([s for _, s in rows], pad_id)
        row_f = {t: (A[gidx], B[gidx]) for t, (A, B) in grouped.items()}
        with applied(bm.model, row_f, self.scale):
            s_logits = bm.model(ids, attention_mask=(ids != pad_id).long()).logits
        with torch.no_grad():
            t_ids, t_lab, _ = pad_rows(d["teacher"], pad_id)
            t_logits = bm.model(t_ids, attention_mask=(t_ids != pad_id).long()).logits
            b_logits = bm.model(ids, attention_mask=(ids != pad_id).long()).logits
        ns = len(d["student"])
        s_ans, gold = logits_at(s_logits[:ns], lab[:ns])
        t_ans, t_gold = logits_at(t_logits, t_lab)
        assert torch.equal(gold, t_gold), "teacher and student answer tokens differ"
        kl = F.kl_div(F.log_softmax(s_ans, -1), F.log_softmax(t_ans, -1), log_target=True, reduction="batchmean")
        ce = F.cross_entropy(s_ans, gold)
        l_ans, l_tok = logits_at(s_logits[ns:], lab[ns:])
        b_ans, _ = logits_at(b_logits[ns:], lab[ns:])
        loc = F.kl_div(F.log_softmax(l_ans, -1), F.log_softmax(b_ans, -1), log_target=True, reduction="batchmean")
        hinge = margin_hinge(l_ans, b_ans, l_tok)
        l1 = sum(B.abs().mean() for _, B in f.values())
        loss = kl + self.rc.ce * ce + self.rc.local * loc + self.rc.l1 * l1
        if self.rc.local_margin:
            loss = loss + self.rc.local_margin * hinge
        loc_bias = torch.zeros(())
        if self.rc.local_bias:
            nl = len(d["local"])
            lo = slice(ns, ns + nl)
            only = {t: (a[None].expand(nl, -1, -1, -1), b[None].expand(nl, -1, -1, -1)) for t, (a, b) in bias.items()}
            with applied(bm.model, only, self.scale):
                o_logits = bm.model(ids[lo], attention_mask=(ids[lo] != pad_id).long()).logits
            o_ans, o_tok = logits_at(o_logits, lab[lo])
            ob_ans, _ = logits_at(b_logits[lo], lab[lo])
            loc_bias = F.kl_div(F.log_softmax(o_ans, -1), F.log_softmax(ob_ans, -1), log_target=True, reduction="batchmean")
            loc_bias = loc_bias + margin_hinge(o_ans, ob_ans, o_tok)
            loss = loss + self.rc.local_bias * loc_bias
        shared = torch.zeros(())
        if self.rc.shared:
            for A, B in f.values():
                D = B @ A  # (N, L, d_out, d_in)
                shared = shared + D.mean(0).pow(2).sum() / D.pow(2).sum((1, 2, 3)).mean().clamp_min(1e-12)
            loss = loss + self.rc.shared * shared
        with torch.no_grad():
            acc = (s_ans.argmax(-1) == gold).float().mean().item()
        return loss, {"kl": kl.item(), "ce": ce.item(), "loc": loc.item(), "hinge": round(hinge.item(), 4), "shared": round(float(shared.detach()), 4),
                      "tok_acc": round(acc, 4), "k": k, **({"mine_drop": round(mine_drop, 3)} if mined else {}),
                      **({"loc_bias": round(loc_bias.item(), 4)} if self.rc.local_bias else {})}


@torch.no_grad()
def monitor(bm: BaseModel, hyper: HyperNetwork, world: World, n: int = 24, group: int = 8, needle: bool = False) -> dict:
    """Greedy accuracy on fresh people: each adapter alone, adapters summed in groups of
    ``group`` (composition), and locality (other people's answers unchanged); with
    ``needle``, exact magic numbers answered after injecting ``n`` needle haystacks."""
    people = skill_validation(world, n, seed=1)
    docs = documents(world, people, 1)
    qas = sample_questions(world, people, 3, 1)
    inj = HyperInjector(bm, hyper)
    ads = dict(zip(docs, inj.inject_many(list(docs.values())), strict=True))
    single = score(ask_injected(bm, qas, ads), qas).acc
    summed: dict[str, Adapter] = {}
    names = list(docs)
    for i in range(0, n, group):
        members = names[i : i + group]
        parts = [ads[m].parts() for m in members]  # documents' ranks summed, the shared bias once
        bias = parts[0][1]
        assert bias is not None
        summed |= dict.fromkeys(members, Adapter(concat([doc for doc, _ in parts] + [bias]), 1.0))
    composed = score(ask_injected(bm, qas, summed), qas).acc
    out = {"acc_single": round(single, 3), f"acc_sum{group}": round(composed, 3)}
    # Locality on base people (answers the model knows) and on strangers (fresh people).
    for key, others in (("locality", world.base[:n]), ("locality_unknown", skill_validation(world, n, seed=2))):
        other = sample_questions(world, others, 1, 2)
        plain = ask(bm, other)
        moved = ask_injected(bm, other, {q.person: ads[names[i]] for i, q in enumerate(other)})
        out[key] = round(sum(a == b for a, b in zip(plain, moved, strict=True)) / len(other), 3)
    if needle:
        r = random.Random("needle-monitor")
        texts, values = zip(*(world.needle_haystack(r) for _ in range(n)), strict=True)
        hits = 0
        for v, ad in zip(values, inj.inject_many(list(texts)), strict=True):
            with applied(bm.model, ad.factors, ad.scale):
                hits += bm.answer(NEEDLE_QUESTION).strip() == v
        out["needle"] = round(hits / n, 3)
    return out


def sync_params(module: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights."""
    for p in module.parameters():
        torch.distributed.broadcast(p.data, 0)


def all_reduce_grads(module: torch.nn.Module) -> None:
    """Average gradients over ranks (data parallel).

    Written out instead of wrapping in DistributedDataParallel: on torch 2.13 with gloo,
    DDP's reducer was seen to skip the all-reduce for this graph (ranks kept different
    gradients, no error); the explicit collective is the same arithmetic and is tested.
    """
    world = torch.distributed.get_world_size()
    for p in module.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)
        p.grad /= world


def setup(out: str = "runs/hypernet", base: str | None = None, seed: int = 0, steps: int = 4000,
          export: bool = False, docs_per_step: int = 8, lr: float = 1e-3, group_sizes: tuple[int, ...] = (1,),
          init: str | None = None, shared: float = 0.0, device: str = "cpu", max_seconds: float | None = None,
          eval_every: int | None = None, local: float = 1.0, p_needle: float = 0.0, local_own: bool = False,
          p_paraphrase: float = 0.0, local_margin: float = 0.0, n_local: int = 4,
          local_mine: int = 0, mine_keep: int = 2, mine_strangers: bool = False, rank: int = 8,
          local_bias: float = 0.0, bias_fade: int = 0, targets: tuple[str, ...] = ("mlp.down_proj",)) -> Path:
    """Train (or resume) the hypernetwork under ``out``; with ``export``, ship it beside the base.

    A later stage starts from another run's weights (``init``: a run folder or a shipped
    hypernetwork folder) with its own schedule, e.g. the composition stage: ``group_sizes``
    (1, 2, 4, 8), where each step sums the adapters of a group and asks about all of them.

    ``device`` trains elsewhere than the CPU (e.g. "cuda" on a lent accelerator; the saved
    weights load on the CPU as usual). ``max_seconds`` fits the step count to a wall-clock
    budget: after the first ``CALIBRATE`` steps (inside warm-up, which does not depend on
    the length) it sets ``steps`` from the measured time per step, so the cosine schedule
    still ends at the last step. ``rank`` above ``init``'s grows it (see :func:`reverie.hypernet.store.grown`).
    ``targets``: the modules inside each layer that the adapters write (``init`` must have the same)."""
    dist = int(os.environ.get("WORLD_SIZE", "1")) > 1
    lora_rank, rank = rank, 0
    if dist:
        torch.distributed.init_process_group("gloo")
        rank = torch.distributed.get_rank()
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    rc = HyperRecipe(seed=seed, steps=steps, docs_per_step=docs_per_step, lr=lr, group_sizes=tuple(group_sizes), shared=shared,
                     local=local, p_needle=p_needle, local_own=local_own, p_paraphrase=p_paraphrase, local_margin=local_margin,
                     n_local=n_local, local_mine=local_mine, mine_keep=mine_keep, mine_strangers=mine_strangers,
                     rank=lora_rank, local_bias=local_bias, bias_fade=bias_fade, targets=tuple(targets))
    if eval_every is not None:
        rc.eval_every = eval_every
    bm = BaseModel.load(base)
    world = World(WorldConfig(seed=0))
    torch.manual_seed(seed)
    # alpha = rank keeps the delta's scale at 1 whatever the rank, so a grown rank starts where it grew from.
    cfg = build_config(bm, rc.rank, rc.targets, latent_dim=rc.latent_dim, n_blocks=rc.n_blocks, pointer_a=rc.pointer_a,
                       lora_alpha=float(rc.rank))
    hyper = HyperNetwork(cfg)
    if dist:
        sync_params(hyper)
    opt = torch.optim.AdamW(hyper.parameters(), lr=rc.lr, weight_decay=0.0)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    ck = root / "ckpt"
    step, elapsed = resume_or_init(ck, hyper, opt, init)
    if device != "cpu":
        # Tensors the step builds from token lists are created on the default device.
        bm.model.to(device)
        hyper.to(device)
        torch.set_default_device(device)
    st = Step(bm, hyper, world, rc)
    log = (root / "log.jsonl").open("a") if rank == 0 else None
    start_step = step
    t0 = time.time() - elapsed
    with progress() as bar:
        task = bar.add_task("train hypernet", total=rc.steps, completed=step)
        while step < rc.steps:
            hyper.train()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, rc)
            loss, info = st.loss(st.data(step, rank))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if dist:
                all_reduce_grads(hyper)
            torch.nn.utils.clip_grad_norm_(hyper.parameters(), 1.0)
            opt.step()
            step += 1
            if rc.bias_fade:
                fade_bias(hyper, step, rc.bias_fade)
            if max_seconds is not None and step - start_step == CALIBRATE:
                per_step = (time.time() - t0 - elapsed) / CALIBRATE
                rc.steps = max(step + 1, int(step + (max_seconds - (time.time() - t0 - elapsed)) / per_step))
                bar.update(task, total=rc.steps)
                if log is not None:
                    log.write(json.dumps({"step": step, "fitted_steps": rc.steps, "s_per_step": round(per_step, 4)}) + "\n")
            bar.update(task, advance=1, description=f"train hypernet loss {loss.item():.3f}")
            if log is not None and (step % 10 == 0 or step == rc.steps):
                log.write(json.dumps({"step": step, "loss": round(loss.item(), 4), **info, "t": round(time.time() - t0, 1)}) + "\n")
                log.flush()
            if log is not None and (step % rc.eval_every == 0 or step == rc.steps):
                hyper.eval()
                rec = {"step": step, **monitor(bm, hyper, world, rc.monitor_people, needle=rc.p_needle > 0)}
                bar.console.log(rec)
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if rank == 0 and (step % rc.ckpt_every == 0 or step == rc.steps):
                save_train_state(ck, hyper, opt, {"step": step, "elapsed": time.time() - t0, "recipe": asdict(rc),
                                                  "fingerprint": cfg.base_fingerprint, "config": cfg.to_json(), "init": init})
    if rank == 0 and export:
        dest = Path(base or DEFAULT_MODEL_DIR) / "hypernet"
        # The command that replays this run on a CPU: the step count as run (fitted when
        # --max-seconds set it), every option that changes the result.
        stage = f" --model {base}" if base else ""
        stage += f" --docs-per-step {docs_per_step}" if docs_per_step != 8 else ""
        stage += "" if init is None else f" --init {init} --group-sizes {','.join(map(str, group_sizes))} --lr {lr:g}"
        stage += f" --shared {shared:g}" if shared else ""
        stage += f" --local {local:g}" if local != 1.0 else ""
        stage += " --local-own" if local_own else ""
        stage += f" --local-margin {local_margin:g}" if local_margin else ""
        stage += f" --n-local {n_local}" if n_local != 4 else ""
        stage += f" --local-mine {local_mine} --mine-keep {mine_keep}" if local_mine else ""
        stage += " --mine-strangers" if local_mine and mine_strangers else ""
        stage += f" --p-needle {p_needle:g}" if p_needle else ""
        stage += f" --p-paraphrase {p_paraphrase:g}" if p_paraphrase else ""
        stage += f" --rank {lora_rank}" if lora_rank != 8 else ""
        stage += f" --local-bias {local_bias:g}" if local_bias else ""
        stage += f" --bias-fade {bias_fade}" if bias_fade else ""
        stage += f" --targets {','.join(targets)}" if tuple(targets) != ("mlp.down_proj",) else ""
        command = f"reverie train hypernet --out {out} --seed {seed} --steps {rc.steps}{stage} --export"
        save_hypernet(hyper, dest, {"recipe": asdict(rc), "train_wall_s": round(time.time() - t0, 1), "init": init,
                                    "command": command, "stages": manifest_stages(init) + [command]})
    if dist:
        torch.distributed.destroy_process_group()
    if device != "cpu":
        torch.set_default_device("cpu")
    return root


__all__ = ["HyperConfig", "HyperRecipe", "Step", "fingerprint", "random", "setup"]
