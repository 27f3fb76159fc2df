"""Shared fixtures: a tiny tokenizer and tiny random models of several architectures."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from reverie.base.tokenizer import train_tokenizer
from reverie.world import World, WorldConfig


def template_pattern(template: str) -> re.Pattern[str]:
    """A question template as a pattern matching the questions formatted from it."""
    return re.compile(re.escape(template).replace(re.escape("{name}"), ".+").replace(re.escape("{poss}"), "(his|her)") + "$")


TINY_WORLD = WorldConfig(seed=0, n_base=20, n_held_out=20, n_cities=30, n_companies=30, n_universities=20)


@pytest.fixture(scope="session")
def world() -> World:
    return World(TINY_WORLD)


@pytest.fixture(scope="session")
def tokenizer(world):
    r = random.Random(0)
    texts = [world.biography(p, r) for p in world.base] + ["Context: Question: Answer:\n"]
    return train_tokenizer(texts, vocab_size=400)


def _configs(vocab: int) -> dict:
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return {
        "llama": lambda: LlamaForCausalLM(LlamaConfig(**common)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**common)),
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                                   bos_token_id=1, eos_token_id=2, pad_token_id=0)),
    }


@pytest.fixture(scope="session", params=["llama", "qwen2", "gpt2"])
def tiny_model_dir(request, tokenizer, tmp_path_factory) -> Path:
    """A tiny random model of one architecture saved as a local model directory."""
    torch.manual_seed(0)
    model = _configs(len(tokenizer))[request.param]()
    d = tmp_path_factory.mktemp(f"tiny-{request.param}")
    model.save_pretrained(str(d))
    tokenizer.save_pretrained(str(d))
    return d


@pytest.fixture(scope="session")
def tiny_llama_dir(tokenizer, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = _configs(len(tokenizer))["llama"]()
    d = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(str(d))
    tokenizer.save_pretrained(str(d))
    return d
