"""Recipe: train the embedded default base model on the world.

`reverie train base --out runs/base` runs it (resumable: rerun the same command), then
`--export` writes the final weights and tokenizer into the package's assets with a manifest.
The model learns (1) the base population's facts from biographies and closed-book QA and
(2) reading: answering questions about a fresh person's biography in context.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from reverie.base.data import Segmenter, batch
from reverie.base.metrics import abstain_rate
from reverie.base.model import DEFAULT_MODEL_DIR, BaseModel, Generation
from reverie.base.qa import ask, documents, sample_questions, score, skill_validation
from reverie.base.tokenizer import load_tokenizer, train_tokenizer
from reverie.errors import ReverieError
from reverie.utils import (
    atomic_write_text,
    load_train_state,
    manifest_stages,
    progress,
    read_state,
    save_train_state,
    sha256_file,
    warmup_cosine,
)
from reverie.world import World, WorldConfig
from reverie.world.templates import HAYSTACK, NEEDLE_QUESTION


@dataclass
class BaseRecipe:
    """Everything that determines the embedded base model."""

    seed: int = 0
    """Seeds the world, the data order and the initialisation."""
    steps: int = 4600
    """Optimizer steps in all (stage 1, then the focus stage; about 70 minutes on 2 cores)."""
    cosine_steps: int = 4000
    """Length of stage 1's cosine learning-rate schedule."""
    focus_from: int = 3400
    """Step at which the focus stage starts: more reading episodes, and the attributes in
    ``focus`` asked in every episode. Per-attribute monitoring showed reading arriving one
    attribute at a time; after 3000 steps birth dates were still copied at chance in context
    (the model answered with a date from its memorised prior) while every other attribute was
    read correctly and closed-book recall was complete."""
    focus: tuple[str, ...] = ("birth_date",)
    """Attributes asked in every reading episode during the focus stage."""
    p_context_focus: float = 0.7
    """Share of reading episodes during the focus stage."""
    lr_focus: float = 5e-4
    """Peak learning rate of the focus stage (cosine to 10% over the stage)."""
    needle_from: int | None = None
    """Step at which the needle stage starts (None: no needle stage): the focus stage's data
    with needle episodes mixed in (``p_needle``), so the model learns to read a "special
    magic number" out of haystack text, which ``reverie bench long``'s needle asks for and
    the world's reading episodes never show it."""
    p_needle: float = 0.15
    """Share of segments that are needle episodes during the needle stage."""
    p_unknown: float = 0.0
    """Share of segments, during the needle stage, that are closed-book questions mixing base
    people and fresh people never read about, answered "I don't know"
    (``templates.UNKNOWN_ANSWER``). Without it the model guesses about strangers from a
    nearly flat distribution, and about half of those guesses flipped under any injected
    adapter (``bench qa``'s ``locality_unknown`` 0.55)."""
    lr_needle: float = 3e-4
    """Peak learning rate of the needle stage (short warm-up, cosine to 10% over the stage)."""
    p_paraphrase: float = 0.0
    """Share of questions (in reading, closed-book and unknown segments) asked with a
    paraphrase (``templates.QUESTIONS_PARAPHRASE``) instead of a training template. With only
    the four training templates per attribute, the model keyed on their exact words: in
    context it answered held-out "... birthday?" questions with a major (0.02) and "X graduated
    from which university?" with a city (0.10)."""
    p_which: float = 0.0
    """Share of questions asked as "Which <noun> ..." with varied nouns
    (``templates.QUESTIONS_WHICH``). The model read "Which" followed by a noun it never saw in
    a question as asking for the major, whatever the verb said ("Which town was X born in?"
    0.00 in context, "What day was X born?" 1.00)."""
    p_words: float = 0.0
    """Share of questions, for the attributes in ``templates.QUESTIONS_BASE_WORDS``, asked
    with a word the hypernetwork's training questions never use ("school" for the university:
    the model read "Which school did X go to?" as asking for the major, 0.00 in context)."""
    rows: int = 16
    """Rows per batch."""
    seq_len: int = 256
    """Row length in tokens; also the model's native context window."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, linear warm-up then cosine to 10%)."""
    warmup: int = 100
    """Warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay on matrices."""
    vocab: int = 4096
    """Byte-level BPE vocabulary size."""
    hidden: int = 256
    """Model width."""
    layers: int = 4
    """Transformer layers."""
    heads: int = 8
    """Attention heads."""
    intermediate: int = 1024
    """MLP width."""
    p_context: float = 0.45
    """Share of segments that are in-context reading episodes on skill people."""
    p_bio: float = 0.15
    """Share of segments that are base-population biographies (the rest: closed-book QA)."""
    p_partial: float = 0.3
    """Share of reading episodes whose biography states only some attributes."""
    eval_every: int = 500
    """Steps between monitoring evaluations."""
    ckpt_every: int = 100
    """Steps between checkpoints."""

    def model_config(self) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=self.vocab, hidden_size=self.hidden, intermediate_size=self.intermediate,
            num_hidden_layers=self.layers, num_attention_heads=self.heads,
            num_key_value_heads=self.heads, max_position_embeddings=self.seq_len,
            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
            pad_token_id=0,
        )


def tokenizer_corpus(world: World, seed: int) -> list[str]:
    """World text for the tokenizer: base and skill people only (never held-out)."""
    r = random.Random(seed)
    texts = [world.biography(p, r) for p in world.base for _ in range(3)]
    skill = world.skill_people(seed + 1)
    texts += [world.biography(next(skill), r) for _ in range(3000)]
    texts += [f"Context: x\nQuestion: {qa.question}\nAnswer: {qa.answer}\n"
              for p in world.base for qa in world.questions(p)]
    texts += list(HAYSTACK) * 20
    return texts


def lr_at(step: int, rc: BaseRecipe) -> float:
    if rc.needle_from is not None and step >= rc.needle_from:
        return warmup_cosine(step - rc.needle_from, rc.lr_needle, 20, rc.steps - rc.needle_from)
    if step >= rc.focus_from:  # the focus stage: its own cosine, no warm-up
        return warmup_cosine(step - rc.focus_from, rc.lr_focus, 0, rc.steps - rc.focus_from)
    return warmup_cosine(step, rc.lr, rc.warmup, rc.cosine_steps)


def monitor(bm: BaseModel, world: World, seed: int, n: int = 32, needle: bool = False,
            unknown: bool = False) -> dict:
    """Greedy accuracy on fresh skill people in context and on base people closed-book;
    with ``needle``, also on magic numbers read in context (``needle_ctx``); with
    ``unknown``, the share of closed-book questions about fresh people answered "I don't
    know" (``abstain``)."""
    people = skill_validation(world, n, seed)
    qas = sample_questions(world, people, 6, seed)
    full = score(ask(bm, qas, documents(world, people, seed)), qas)
    base_qas = sample_questions(world, world.base[:n * 2], 3, seed)
    closed = score(ask(bm, base_qas), base_qas)
    out = {"ctx": round(full.acc, 3), "ctx_attr": full.per_attribute,
           "closed": round(closed.acc, 3), "closed_attr": closed.per_attribute}
    if needle:
        out["needle_ctx"] = needle_in_context(bm, world, seed, n)
    if unknown:
        out["abstain"] = round(abstain_rate(ask(bm, qas)), 3)
    return out


def needle_in_context(bm: BaseModel, world: World, seed: int, n: int = 32) -> float:
    """Share of ``n`` fresh needle haystacks (``World.needle_haystack``) whose magic number
    the model answers exactly with the haystack in context."""
    r = random.Random(f"needle-monitor:{seed}")
    hits = 0
    for _ in range(n):
        text, value = world.needle_haystack(r)
        hits += bm.answer(NEEDLE_QUESTION, text).strip() == value
    return round(hits / n, 3)


def setup(out: str = "runs/base", seed: int = 0, steps: int = 4600, export: bool = False,
          rows: int = 16, lr: float = 2e-3, layers: int = 4, hidden: int = 256,
          needle_from: int | None = None, p_needle: float = 0.15, lr_needle: float = 3e-4,
          p_unknown: float = 0.0, p_paraphrase: float = 0.0, p_which: float = 0.0, p_words: float = 0.0, init: str | None = None, device: str = "cpu",
          export_to: str | None = None) -> Path:
    """Train (or resume) the base model under ``out``; with ``export``, ship it to assets.

    ``needle_from``: start the needle stage at this step: extend a finished run with it
    (``steps`` past its end, ``needle_from`` at its end), or start a new run from a trained
    model's weights (``init``: a model folder such as the shipped one, or a run folder; its
    tokenizer is kept) with ``needle_from=0``. The needle stage trains on the focus stage's
    data plus needle episodes. ``device``: e.g. "cuda" on a lent accelerator. ``export_to``:
    write the model folder there instead of shipping it (a candidate to benchmark with
    ``--model``; rerun the finished run's command with it to export it)."""
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rc = BaseRecipe(seed=seed, steps=steps, rows=rows, lr=lr, layers=layers, hidden=hidden,
                    needle_from=needle_from, p_needle=p_needle, lr_needle=lr_needle,
                    p_unknown=p_unknown, p_paraphrase=p_paraphrase, p_which=p_which, p_words=p_words)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    world = World(WorldConfig(seed=seed))
    tok_dir = root / "tokenizer"
    src = None if init is None else _init_weights(Path(init))
    if not (tok_dir / "tokenizer.json").is_file():
        if src is not None:  # a model's weights go with the tokenizer they were trained with
            load_tokenizer(src[1]).save_pretrained(str(tok_dir))
        else:
            train_tokenizer(tokenizer_corpus(world, seed), rc.vocab).save_pretrained(str(tok_dir))
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(seed)
    model: Any = LlamaForCausalLM(rc.model_config())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": rc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=rc.lr, betas=(0.9, 0.95))
    ck = root / "ckpt"
    step = 0
    elapsed = 0.0
    state = read_state(ck)
    if state is not None:
        free = {"steps", "eval_every", "ckpt_every"}  # may change between runs (to extend training)
        old = state["recipe"]
        # A field missing from an older checkpoint's recipe did not exist yet: not a mismatch.
        new = json.loads(json.dumps(asdict(rc)))  # tuples compare as the JSON lists they were saved as
        if any(old.get(k, v) != v for k, v in new.items() if k not in free):
            raise ReverieError(f"checkpoint in {ck} was made by a different recipe; use another --out")
        load_train_state(ck, model, opt)
        step, elapsed = state["step"], state["elapsed"]
    elif src is not None:
        missing, unexpected = model.load_state_dict(load_file(str(src[0])), strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:  # the head is tied to the embeddings
            raise ReverieError(f"--init {init}: weights do not fit the recipe's model ({len(missing)} missing, {len(unexpected)} unexpected)")
        model.tie_weights()
    if device != "cpu":
        model.to(device)
        opt.load_state_dict(opt.state_dict())  # moves any loaded optimizer state to the parameters' device
        torch.set_default_device(device)  # the batches and monitoring prompts are built from lists
    seg = Segmenter(tok, world, rc.p_paraphrase, rc.p_which, rc.p_words)
    log = (root / "log.jsonl").open("a")
    bm = BaseModel(model, tok)
    t0 = time.time() - elapsed
    with progress() as bar:
        task = bar.add_task("train base", total=rc.steps, completed=step)
        while step < rc.steps:
            model.train()
            needle = rc.needle_from is not None and step >= rc.needle_from
            focus = step >= rc.focus_from or needle
            ids, lab = batch(seg, seed, step, rc.rows, rc.seq_len,
                             rc.p_context_focus if focus else rc.p_context, rc.p_partial,
                             rc.p_bio * (1 - rc.p_context_focus) / (1 - rc.p_context) if focus else rc.p_bio,
                             rc.focus if focus else (), rc.p_needle if needle else 0.0,
                             rc.p_unknown if needle else 0.0)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, rc)
            loss = model(input_ids=ids, labels=lab).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            bar.update(task, advance=1, description=f"train base loss {loss.item():.3f}")
            rec: dict = {"step": step, "loss": round(loss.item(), 4), "t": round(time.time() - t0, 1)}
            if step % rc.eval_every == 0 or step == rc.steps:
                model.eval()
                rec |= monitor(bm, world, seed, needle=rc.needle_from is not None, unknown=rc.p_unknown > 0)
                bar.console.log(rec)
            if step % 10 == 0 or "ctx" in rec:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if step % rc.ckpt_every == 0 or step == rc.steps:
                save_train_state(ck, model, opt, {"step": step, "elapsed": time.time() - t0, "recipe": asdict(rc)})
    model.eval()
    if device != "cpu":
        torch.set_default_device("cpu")
        model.to("cpu")
    if export or export_to:
        dest = DEFAULT_MODEL_DIR if export else Path(str(export_to))
        export_model(root, model, tok, rc, time.time() - t0, dest, init, "--export" if export else f"--export-to {dest}")
    return root


def _init_weights(src: Path) -> tuple[Path, Path]:
    """(weights file, tokenizer folder) of a model folder or a base run folder."""
    for weights, tok in ((src / "model.safetensors", src), (src / "ckpt" / "model.safetensors", src / "tokenizer")):
        if weights.is_file() and (tok / "tokenizer.json").is_file():
            return weights, tok
    raise ReverieError(f"--init {src}: neither a model folder (model.safetensors, tokenizer.json) nor a base run folder")


def export_model(root: Path, model, tok, rc: BaseRecipe, wall: float,
                 dest: Path = DEFAULT_MODEL_DIR, init: str | None = None, flag: str = "--export") -> Path:
    """Ship weights (float16 safetensors) + tokenizer + manifest into ``dest``."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    half: Any = LlamaForCausalLM(rc.model_config())
    half.load_state_dict(model.state_dict())
    half.half().save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    files = sorted(p.name for p in tmp.iterdir())
    command = (f"reverie train base --out {root} --seed {rc.seed} --steps {rc.steps}"
               + (f" --init {init}" if init else "")
               + (f" --needle-from {rc.needle_from} --p-needle {rc.p_needle:g} --lr-needle {rc.lr_needle:g}"
                  + (f" --p-unknown {rc.p_unknown:g}" if rc.p_unknown else "")
                  if rc.needle_from is not None else "")
               + (f" --p-paraphrase {rc.p_paraphrase:g}" if rc.p_paraphrase else "")
               + (f" --p-which {rc.p_which:g}" if rc.p_which else "")
               + (f" --p-words {rc.p_words:g}" if rc.p_words else "") + f" {flag}")
    manifest = {
        "name": "reverie-world-base",
        "recipe": asdict(rc),
        "command": command,
        # Every command from scratch to these weights, in order (a run from --init continues
        # the commands that made its starting point; each exports where the next one reads).
        "stages": manifest_stages(init) + [command],
        "init": init,
        "train_wall_s": round(wall, 1),
        "sha256": {f: sha256_file(tmp / f) for f in files},
    }
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2))
    if dest.exists():
        # Folders beside the model (its hypernet/, policy/) move over rather than vanish: a
        # hypernetwork made for the old weights then refuses to load with a message naming
        # the mismatch, where deleting it would lose it silently.
        for sub in dest.iterdir():
            if sub.is_dir():
                sub.rename(tmp / sub.name)
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


__all__ = ["BaseRecipe", "Generation", "setup"]
