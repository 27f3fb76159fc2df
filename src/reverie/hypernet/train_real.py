"""Recipe: meta-train a hypernetwork for a real model on real passages
(`reverie train hypernet --model smollm2`).

The same module and objective as the world recipe (``train.py``), with targets the model
writes itself, as Doc-to-LoRA does: the teacher is the base model with the passage in
context, and its greedy answer to each dataset question is the answer the student (base
model plus the emitted adapter, no passage) must reproduce; the loss is the KL to the
teacher's full next-token distribution over those answer tokens, plus a KL-to-base term on
questions about *other* passages (locality). Gold answers are never trained on.

The teacher answers are generated once, before training, for a pool of training passages
(the slow part on a CPU; seconds on a GPU) and kept in ``teacher.jsonl`` so a resumed run
reuses them.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from reverie.base.model import IGNORE, BaseModel, Generation, pad_rows
from reverie.errors import ReverieError
from reverie.hypernet.lora import applied, concat
from reverie.hypernet.model import HyperNetwork
from reverie.hypernet.reading import read_docs
from reverie.hypernet.store import build_config, resume_or_init, save_hypernet
from reverie.utils import (
    progress,
    read_jsonl,
    save_train_state,
    warmup_cosine,
)
from reverie.world.passages import Passage


@dataclass
class RealRecipe:
    """Everything that determines a hypernetwork trained on real passages."""

    seed: int = 0
    """Seeds the passage pool, data order and initialisation."""
    steps: int = 2000
    """Optimizer steps (or fitted to ``max_seconds``)."""
    pool: int = 4000
    """Training passages given teacher answers before training."""
    q_per_doc: int = 3
    """Questions per passage in the pool."""
    docs_per_step: int = 16
    """Passages injected per step (one adapter each)."""
    n_local: int = 2
    """Questions about other passages asked of each adapter (locality)."""
    lr: float = 3e-4
    """Peak learning rate (AdamW, warm-up then cosine to 10%)."""
    warmup: int = 100
    """Warm-up steps."""
    local: float = 1.0
    """Weight of the KL-to-base term on other passages' questions."""
    l1: float = 1e-3
    """L1 penalty on the emitted B factors."""
    rank: int = 8
    """LoRA rank per passage."""
    latent_dim: int = 256
    """Perceiver width."""
    n_blocks: int = 2
    """Perceiver blocks."""
    targets: tuple[str, ...] = ("mlp.down_proj",)
    """Target modules inside each layer."""
    max_answer_tokens: int = 24
    """Teacher answers are cut at this many tokens (as the benchmark's answers are)."""
    ckpt_every: int = 100
    """Steps between checkpoints."""
    eval_every: int = 50
    """Steps between held-out evaluations (KL and answer-token agreement on passages never
    trained on); 0 turns them off."""
    focus: float = 0.0
    """Extra weight on the answer tokens the passage decides: each token's KL term is
    weighted by 1 + focus × KL(teacher ‖ base model with no passage) / its batch mean, so
    the tokens the question alone predicts (the answer's phrasing) count less."""
    n_eval: int = 48
    """Held-out passages in that evaluation (two questions each)."""


def read_pool(path: str | Path) -> list[dict]:
    """Teacher rows from a JSON-lines file (``.gz`` too), as :func:`teacher_pool` writes
    them; a file that is not such rows is a clear error."""
    p = Path(path)
    try:
        rows = read_jsonl(p)
        if not rows or not all(isinstance(r, dict) and r.get("text") and r.get("qas") for r in rows):
            raise ValueError("expected rows {text, qas: [[question, answer], ...]}")
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ReverieError(f"teacher pool {p}: {e}") from None
    return rows


def teacher_pool(bm: BaseModel, passages: list[Passage], rc: RealRecipe, path: Path,
                 batch: int = 32, n: int | None = None, q_per_doc: int | None = None,
                 max_seconds: float | None = None) -> list[dict]:
    """``{"text", "qas": [[question, teacher answer], ...]}`` for ``n`` (default
    ``rc.pool``) passages, read from ``path`` if a previous run wrote it. ``max_seconds``
    stops generating after the batch that passes that budget and keeps the passages answered
    so far (on a short GPU lease, the answer rate is not known in advance)."""
    if path.is_file():
        return read_pool(path)
    r = random.Random(rc.seed)
    chosen = r.sample(passages, min(rc.pool if n is None else n, len(passages)))
    k = rc.q_per_doc if q_per_doc is None else q_per_doc
    jobs = [(i, q) for i, p in enumerate(chosen) for q, _ in r.sample(p.qas, min(k, len(p.qas)))]
    prompts = [bm.prompt(q, chosen[i].text) for i, q in jobs]
    answers: list[str] = []
    gen = Generation(max_new_tokens=rc.max_answer_tokens, batch_size=batch)
    t0 = time.time()
    with progress() as bar:
        task = bar.add_task("teacher answers", total=len(prompts))
        for k in range(0, len(prompts), batch):
            answers += bm.answer_batch(prompts[k : k + batch], gen)
            bar.update(task, advance=len(prompts[k : k + batch]))
            if max_seconds is not None and time.time() - t0 > max_seconds:
                break
    if len(answers) < len(jobs):
        # Stopped early. Jobs run passage by passage: the first passage not fully answered
        # is dropped with those after it.
        last = jobs[len(answers)][0]
        keep = sum(i < last for i, _ in jobs)
        jobs, answers, chosen = jobs[:keep], answers[:keep], chosen[:last]
    rows: list[dict] = [{"text": p.text, "qas": []} for p in chosen]
    for (i, q), a in zip(jobs, answers, strict=True):
        if a:
            rows[i]["qas"].append([q, a])
    rows = [row for row in rows if row["qas"]]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.rename(path)
    return rows


def answer_logits(bm: BaseModel, rows: list[tuple[list[int], list[int]]]) -> torch.Tensor:
    """Logits predicting each labelled token of right-padded rows: (K, V). Only those
    positions go through the output layer (a 49k vocabulary over every position of a long
    teacher row would dominate memory)."""
    ids, lab, mask = pad_rows(rows, bm.tokenizer.pad_token_id)  # (N, T) each, masked by length
    sel = lab[:, 1:] != IGNORE  # (N, T-1): position t predicts token t+1
    inner, head = getattr(bm.model, "model", None), getattr(bm.model, "lm_head", None)
    if inner is None or head is None:
        return bm.model(ids, attention_mask=mask).logits[:, :-1][sel]
    h = inner(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]  # (N, T-1, d)
    return head(h[sel])  # (K, V)


class RealStep:
    """One step's data and loss; shared by training and tests."""

    def __init__(self, bm: BaseModel, hyper: HyperNetwork, pool: list[dict], rc: RealRecipe):
        self.bm, self.hyper, self.pool, self.rc = bm, hyper, pool, rc
        self.scale = hyper.cfg.lora_alpha / hyper.cfg.rank
        self.enc = lambda s: bm.tokenizer.encode(s, add_special_tokens=False)

    def data(self, step: int) -> dict:
        r = random.Random(f"{self.rc.seed}:{step}")
        docs = r.sample(self.pool, min(self.rc.docs_per_step, len(self.pool)))
        fmt, enc, bm = self.bm.format, self.enc, self.bm
        student, teacher, local = [], [], []
        for di, d in enumerate(docs):
            for q, a in d["qas"]:
                ai = enc(fmt.answer(a))[: self.rc.max_answer_tokens + 1]
                qi, ci = bm.encode(fmt.closed(q)), bm.encode(fmt.context(d["text"], q))
                ci = ci[-(bm.max_length - len(ai)):]
                student.append((di, (qi + ai, [IGNORE] * len(qi) + ai)))
                teacher.append((ci + ai, [IGNORE] * len(ci) + ai))
            others = [o for o in docs if o is not d] or [d]
            for _ in range(self.rc.n_local):
                q, a = r.choice(r.choice(others)["qas"])
                qi, ai = bm.encode(fmt.closed(q)), enc(fmt.answer(a))[: self.rc.max_answer_tokens + 1]
                local.append((di, (qi + ai, [IGNORE] * len(qi) + ai)))
        return {"docs": [d["text"] for d in docs], "student": student, "teacher": teacher, "local": local}

    @torch.no_grad()
    def evaluate(self, d: dict) -> dict:
        """One batch's figures without training on it (held-out passages)."""
        return self.loss(d)[1]

    def loss(self, d: dict) -> tuple[torch.Tensor, dict]:
        bm = self.bm
        hidden, pad, ins = read_docs(bm, d["docs"], self.hyper.key_targets)
        f, bias = self.hyper(hidden, pad, ins)  # {t: (A (N, L, r, d_in), B (N, L, d_out, r))}
        n = len(d["docs"])
        full = concat([f, {t: (a[None].expand(n, -1, -1, -1), b[None].expand(n, -1, -1, -1)) for t, (a, b) in bias.items()}])
        rows = d["student"] + d["local"]
        gidx = torch.tensor([g for g, _ in rows])
        with applied(bm.model, {t: (A[gidx], B[gidx]) for t, (A, B) in full.items()}, self.scale):
            s_logits = answer_logits(bm, [x for _, x in rows])  # (K_s + K_l, V)
        with torch.no_grad():
            t_lp = F.log_softmax(answer_logits(bm, d["teacher"]), -1)  # (K_s, V)
            # The base model with neither passage nor adapter, on the student's and the locality
            # rows in one pass: on the first, where it already agrees with the teacher, the
            # passage taught nothing; the second are the locality term's targets.
            ks = t_lp.shape[0]
            base_lp = F.log_softmax(answer_logits(bm, [x for _, x in rows]), -1)  # (K_s + K_l, V)
            o_lp, b_lp = base_lp[:ks], base_lp[ks:]
        s_lp = F.log_softmax(s_logits[:ks], -1)
        kl_t = (t_lp.exp() * (t_lp - s_lp)).sum(-1)  # (K_s,) per answer token
        gap = (t_lp.exp() * (t_lp - o_lp)).sum(-1)  # (K_s,) KL(teacher || no passage)
        kl = kl_t.mean()
        if self.rc.focus > 0:  # weigh the tokens the passage decides
            w = 1 + self.rc.focus * gap / gap.mean().clamp_min(1e-6)
            fit = (w * kl_t).sum() / w.sum()
        else:
            fit = kl
        loc = F.kl_div(F.log_softmax(s_logits[ks:], -1), b_lp, log_target=True, reduction="batchmean")
        l1 = sum(B.abs().mean() for _, B in f.values())
        loss = fit + self.rc.local * loc + self.rc.l1 * l1
        with torch.no_grad():
            hit = s_lp.argmax(-1) == t_lp.argmax(-1)
            ctx = t_lp.argmax(-1) != o_lp.argmax(-1)  # tokens the passage changes
            info = {"kl": kl.item(), "loc": loc.item(), "tok_agree": hit.float().mean().item(),
                    "kl_none": gap.mean().item(), "ctx_tokens": ctx.float().mean().item(),
                    "ctx_agree": hit[ctx].float().mean().item() if ctx.any() else float("nan")}
        return loss, {k: round(v, 4) for k, v in info.items()}


def setup(out: str = "runs/hypernet_smollm2", model: str = "smollm2", seed: int = 0, steps: int = 2000,
          pool: int = 4000, docs_per_step: int = 16, lr: float = 3e-4, device: str = "cpu",
          max_seconds: float | None = None, export: str | None = None, data: str | None = None,
          init: str | None = None, teacher: str | None = None, eval_data: str | None = None,
          eval_every: int | None = None, focus: float = 0.0, keep_best: bool = False, rank: int = 8,
          targets: tuple[str, ...] = ("mlp.down_proj",)) -> Path:
    """Train (or resume) a hypernetwork for ``model`` on the training passages under ``out``.

    ``data``: a passages JSON-lines file (see :func:`reverie.world.passages.save_jsonl`)
    instead of the fetched training split, e.g. on a machine without the registry.
    ``max_seconds`` fits the step count after 20 timed steps so that the whole command
    (loading, teacher answers and training) ends within that wall-clock budget.
    ``export``: write the trained hypernetwork into that folder (safetensors + manifest).
    ``init``: a new run starts from these weights (a run or hypernetwork folder).
    ``teacher``: teacher rows already written (JSON lines, ``.gz`` too; e.g. generated on
    a CPU ahead of a short GPU lease) instead of generating ``pool`` of them here.
    ``keep_best``: export the weights the held-out monitor scored best (lowest KL) instead of
    the last ones; the manifest names that step. Checkpoints stay the last state, to resume.
    ``eval_data``: held-out passages (JSON lines) for the monitor, instead of the fetched
    test split; without either, no held-out monitor.
    ``rank`` and ``targets``: the adapters' rank and the modules inside each layer they write
    (``init`` must have the same)."""
    from reverie.world import passages as P

    t_start = time.time()
    bm = BaseModel.load(model)
    rc = RealRecipe(seed=seed, steps=steps, pool=pool, docs_per_step=docs_per_step, lr=lr, focus=focus, rank=rank,
                    targets=tuple(targets))
    if eval_every is not None:
        rc.eval_every = eval_every
    torch.manual_seed(seed)
    # alpha = rank: the delta's scale stays 1 at any rank, as in the world recipe (8 = the shipped rank's).
    cfg = build_config(bm, rc.rank, rc.targets, latent_dim=rc.latent_dim, n_blocks=rc.n_blocks, pointer_a=True,
                       lora_alpha=float(rc.rank))
    hyper = HyperNetwork(cfg)
    opt = torch.optim.AdamW(hyper.parameters(), lr=rc.lr, weight_decay=0.0)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    ck = root / "ckpt"
    if device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = True
        bm.model.to(device)
        hyper.to(device)
        torch.set_default_device(device)
    # After the move: the optimizer state loads onto the weights' device.
    step, elapsed = resume_or_init(ck, hyper, opt, init)
    t_pool = time.time()
    batch = 128 if device != "cpu" else 16
    if teacher:
        pool_rows = read_pool(teacher)
        # The manifest records what was trained on, not the unused defaults.
        rc.pool, rc.q_per_doc = len(pool_rows), max(len(r["qas"]) for r in pool_rows)
    else:
        passages = P.load_jsonl(data) if data else P.load("train")
        pool_rows = teacher_pool(bm, passages, rc, root / "teacher.jsonl", batch=batch)
    log = (root / "log.jsonl").open("a")
    log.write(json.dumps({"pool": len(pool_rows), "pool_s": round(time.time() - t_pool, 1)}) + "\n")
    st = RealStep(bm, hyper, pool_rows, rc)
    held = None
    if rc.eval_every and (eval_data or P.data_dir().joinpath("DONE").is_file()):
        ev = P.load_jsonl(eval_data) if eval_data else P.load("test")
        ev_rows = teacher_pool(bm, ev, rc, root / "eval_teacher.jsonl", batch=batch, n=rc.n_eval, q_per_doc=2)
        ev_step = RealStep(bm, hyper, ev_rows, replace(rc, docs_per_step=len(ev_rows)))
        held = ev_step.data(0)  # the same held-out batch at every evaluation

    best: dict = {"kl": float("inf"), "step": None, "state": None}

    def log_eval(batch: dict) -> None:
        hyper.eval()
        ev = ev_step.evaluate(batch)
        log.write(json.dumps({"step": step, "eval": ev}) + "\n")
        log.flush()
        if keep_best and ev["kl"] < best["kl"]:  # a CPU copy: 4.7M parameters, cheap beside a step
            best.update(kl=ev["kl"], step=step, state={k: v.detach().to("cpu", copy=True) for k, v in hyper.state_dict().items()})

    if held is not None:
        log_eval(held)
    start_step, t0 = step, time.time() - elapsed
    with progress() as bar:
        task = bar.add_task("train hypernet", total=rc.steps, completed=step)
        while step < rc.steps:
            hyper.train()
            for g in opt.param_groups:
                g["lr"] = warmup_cosine(step, rc.lr, rc.warmup, rc.steps)
            loss, info = st.loss(st.data(step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hyper.parameters(), 1.0)
            opt.step()
            step += 1
            if max_seconds is not None and step - start_step == 20:
                per_step = (time.time() - t0 - elapsed) / 20
                left = max_seconds - (time.time() - t_start) - 30  # 30 s kept for the last checkpoint and export
                rc.steps = max(step + 1, int(step + left / per_step))
                bar.update(task, total=rc.steps)
                log.write(json.dumps({"step": step, "fitted_steps": rc.steps, "s_per_step": round(per_step, 4)}) + "\n")
            bar.update(task, advance=1, description=f"train hypernet kl {info['kl']:.3f}")
            if step % 10 == 0 or step == rc.steps:
                log.write(json.dumps({"step": step, "loss": round(loss.item(), 4), **info, "t": round(time.time() - t0, 1)}) + "\n")
                log.flush()
            if held is not None and (step % rc.eval_every == 0 or step == rc.steps):
                log_eval(held)
            if step % rc.ckpt_every == 0 or step == rc.steps:
                save_train_state(ck, hyper, opt, {"step": step, "elapsed": time.time() - t0, "recipe": asdict(rc),
                                                  "fingerprint": cfg.base_fingerprint, "config": cfg.to_json()})
    if device != "cpu":
        torch.set_default_device("cpu")
        hyper.to("cpu")
        bm.model.to("cpu")
    if export:
        if best["state"] is not None:
            hyper.load_state_dict(best["state"])
        save_hypernet(hyper, Path(export), {
            "best_step": best["step"], "best_eval_kl": None if best["step"] is None else best["kl"],
            "recipe": asdict(rc), "model": model, "train_wall_s": round(time.time() - t0, 1), "device": device,
            "command": f"reverie train hypernet --model {model} --out {out} --seed {seed} --steps {steps} "
                       f"--pool {pool} --docs-per-step {docs_per_step} --lr {lr:g} --focus {focus:g} --export-to {export}"
                       + (f" --init {init}" if init else "") + (f" --teacher {teacher}" if teacher else "")
                       + (" --keep-best" if keep_best else "") + (f" --rank {rank}" if rank != 8 else "")
                       + (f" --targets {','.join(targets)}" if tuple(targets) != ("mlp.down_proj",) else "")})
    return root
