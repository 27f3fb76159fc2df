"""A thin wrapper over any Hugging Face causal LM loaded from a local path.

It exposes what the rest of reverie needs: per-layer hidden states over a document and
greedy answers to questions with or without a document in context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from reverie.base.prompt import PromptFormat, format_for
from reverie.base.real import NAMED, convert
from reverie.errors import InputError, ModelLoadError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default"
MAX_WINDOW = 2048
IGNORE = -100
"""Label of a token that carries no loss (transformers' and torch's ignore index)."""


def decode_input(text: str | bytes) -> str:
    """Bytes that are not UTF-8 are decoded with replacement characters, never rejected."""
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    return text


def resolve(path: str | Path | None) -> Path:
    """A model directory for ``path``: the embedded default for None, the converted cache
    for a name in :data:`reverie.base.real.NAMED`, else the path itself."""
    if path is None:
        return DEFAULT_MODEL_DIR
    if str(path) in NAMED:
        return convert(str(path))
    return Path(path)


def pad_rows(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, labels) rows right-padded to the longest: (ids, labels, attention mask), each
    (N, T); ids padded with ``pad_id``, labels with :data:`IGNORE`. The mask comes from the
    rows' lengths, not ``ids != pad``: a chat model's pad token is its end-of-turn token,
    which every answer ends with."""
    width = max(len(i) for i, _ in rows)
    ids = torch.tensor([i + [pad_id] * (width - len(i)) for i, _ in rows])  # (N, T)
    lab = torch.tensor([la + [IGNORE] * (width - len(la)) for _, la in rows])  # (N, T)
    mask = (torch.arange(width)[None] < torch.tensor([len(i) for i, _ in rows])[:, None]).long()  # (N, T)
    return ids, lab, mask


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware. A CPU without such
    instructions emulates them: bfloat16 autocast was measured 6.6x slower than float32 on
    an AVX2 machine, and 0.70x of it on one with AVX-512 BF16 (README: "A real model on real text")."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    cpu = torch.cpu  # private probes, hence getattr: absent ones count as no
    return any(bool(getattr(cpu, f, lambda: False)()) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


@dataclass
class Generation:
    """Greedy generation settings."""

    max_new_tokens: int = 24
    """Answers in the world are short; a real model may need more."""
    batch_size: int = 32
    """Prompts answered together (left-padded)."""
    min_new_tokens: int = 0
    """Tokens generated before a stop token may end the answer (0: an answer ends at its
    first stop token). Set equal to ``max_new_tokens`` to time answers of one fixed length."""


class BaseModel:
    """A frozen causal LM plus its tokenizer, loaded offline from a local directory."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, path: str = ""):
        self.model: Any = model.eval()  # any transformers causal LM
        self.tokenizer = tokenizer
        self.path = path
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.format: PromptFormat = format_for(self.tokenizer)
        end = self.tokenizer.encode(self.format.answer_end, add_special_tokens=False)
        self.stop_ids = sorted({end[-1], self.tokenizer.eos_token_id} - {None})

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, dtype: torch.dtype = torch.float32) -> BaseModel:
        """Load from ``path`` (default: the embedded model; a name in
        :data:`reverie.base.real.NAMED` loads that model from its local cache, converting
        it on first use). Raises :class:`ModelLoadError`."""
        p = resolve(path)
        if not p.is_dir():
            raise ModelLoadError(f"model path not found: {p}")
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"not a model directory (no config.json): {p}")
        try:
            tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any tokenizer failure is a load failure
            raise ModelLoadError(f"cannot load tokenizer from {p}: {first_line(e)}") from e
        # The embedded model loads in milliseconds: transformers' per-load progress bar is
        # only noise on stderr (and between a CLI's output and its one-line errors).
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(p), local_files_only=True, dtype=dtype, use_safetensors=True,
            )
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"cannot load model weights from {p}: {first_line(e)}") from e
        for param in model.parameters():
            param.requires_grad_(False)
        return cls(model, tok, str(p))

    @property
    def config(self):
        return self.model.config

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def max_length(self) -> int:
        """The context window used, in tokens: the native one, capped at
        :data:`MAX_WINDOW` (a real model's 8k positions would make every padded batch
        slow on a CPU; no passage here comes near it)."""
        c = self.model.config
        n = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None) or 1024
        return min(int(n), MAX_WINDOW)

    # ---- encoding ------------------------------------------------------------------------
    def encode(self, text: str | bytes) -> list[int]:
        """Token ids with the model's BOS, if it has one and the prompt format wants it."""
        text = decode_input(text)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None and self.format.bos else []) + ids

    def qa_rows(self, rows: list[tuple[str | None, str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced rows in the model's own prompt format: (ids, labels, attention mask),
        each (N, T), right-padded. Row = (context or None, question, answer): the prompt
        :meth:`prompt` builds, then the answer as the format ends it; labels score the
        answer tokens alone (:data:`IGNORE` elsewhere). The one collate of every fit, replay
        and guard batch."""
        segs = []
        for ctx, q, a in rows:
            qi = self.encode(self.format.closed(q) if ctx is None else self.format.context(ctx, q))
            ai = self.tokenizer.encode(self.format.answer(a), add_special_tokens=False)
            segs.append(((qi + ai)[: self.max_length], ([IGNORE] * len(qi) + ai)[: self.max_length]))
        return pad_rows(segs, int(self.tokenizer.pad_token_id))

    @torch.no_grad()
    def hidden_states(self, text: str | bytes) -> torch.Tensor:
        """Hidden states entering each layer over ``text``: (n_layers, T, d)."""
        text = decode_input(text)
        if not text.strip():
            raise InputError("empty document: nothing to read")
        ids = self.encode(text)[: self.max_length]
        out = self.model(torch.tensor([ids]), output_hidden_states=True)
        # hidden_states[i] is the input of layer i (hidden_states[-1] is after the last).
        return torch.stack(out.hidden_states[: self.n_layers], 0)[:, 0]  # (L, T, d)

    # ---- answering -----------------------------------------------------------------------
    def prompt(self, question: str, context: str | None = None) -> str:
        question = decode_input(question)
        if not question.strip():
            raise InputError("empty question")
        if len(question) > self.max_length:  # cheap test first: a token is at least one character
            n = len(self.tokenizer.encode(question, add_special_tokens=False))
            if n > self.max_length - Generation().max_new_tokens - 8:
                raise InputError(f"question of {n} tokens does not fit the model's {self.max_length}-token window")
        return self.format.closed(question) if context is None else self.format.context(decode_input(context), question)

    def answer(self, question: str | bytes, context: str | bytes | None = None,
               gen: Generation | None = None) -> str:
        """Greedy answer to one question, with ``context`` in the prompt if given."""
        return self.answer_batch([self.prompt(decode_input(question), None if context is None else decode_input(context))], gen)[0]

    @torch.no_grad()
    def answer_batch(self, prompts: list[str], gen: Generation | None = None) -> list[str]:
        """Greedy answers for prompts already built with :meth:`prompt`."""
        gen = gen or Generation()
        out: list[str] = []
        limit = self.max_length - gen.max_new_tokens
        for i in range(0, len(prompts), gen.batch_size):
            chunk = [self.encode(p)[-limit:] for p in prompts[i : i + gen.batch_size]]
            width = max(len(c) for c in chunk)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([[pad] * (width - len(c)) + c for c in chunk])
            mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk])
            gen_ids = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=gen.max_new_tokens,
                do_sample=False, eos_token_id=self.stop_ids, pad_token_id=pad,
                **({"min_new_tokens": gen.min_new_tokens} if gen.min_new_tokens else {}),
            )[:, width:]
            for row in gen_ids.tolist():
                cut = next((j for j, t in enumerate(row) if t in self.stop_ids), len(row))
                out.append(str(self.tokenizer.decode(row[:cut], skip_special_tokens=True)).strip())
        return out


def first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__
