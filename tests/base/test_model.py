import json

import pytest
import torch

from reverie.base.model import BaseModel
from reverie.errors import InputError, ModelLoadError


def test_load_hidden_states_and_answer(tiny_model_dir):
    bm = BaseModel.load(tiny_model_dir)
    hs = bm.hidden_states("Ada Lovelace was born in London.")
    n_tok = len(bm.encode("Ada Lovelace was born in London."))
    assert hs.shape == (bm.n_layers, n_tok, bm.config.hidden_size if hasattr(bm.config, "hidden_size") else bm.config.n_embd)
    a = bm.answer("Where was Ada born?", context="Ada was born in London.")
    assert isinstance(a, str)
    # Batched answers equal one-at-a-time answers (left padding does not change them).
    qs = ["Where was Ada born?", "Who is Ada's employer?", "What did Ada study at the university?"]
    batch = bm.answer_batch([bm.prompt(q) for q in qs])
    single = [bm.answer(q) for q in qs]
    assert batch == single


def test_non_utf8_input_is_decoded(tiny_model_dir):
    bm = BaseModel.load(tiny_model_dir)
    assert isinstance(bm.answer(b"Where was \xff\xfe born?"), str)
    assert bm.hidden_states(b"\xc3\x28 invalid bytes").shape[1] > 0


def test_empty_input_rejected(tiny_model_dir):
    bm = BaseModel.load(tiny_model_dir)
    with pytest.raises(InputError):
        bm.answer("   ")
    with pytest.raises(InputError):
        bm.hidden_states("")


def test_missing_model_path(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        BaseModel.load(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="config.json"):
        BaseModel.load(tmp_path)


def test_checkpoint_that_does_not_match_config(tiny_llama_dir, tmp_path):
    import shutil

    d = tmp_path / "mismatch"
    shutil.copytree(tiny_llama_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["hidden_size"] = 48
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="weights"):
        BaseModel.load(d)


def test_truncated_weights(tiny_llama_dir, tmp_path):
    import shutil

    d = tmp_path / "trunc"
    shutil.copytree(tiny_llama_dir, d)
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ModelLoadError):
        BaseModel.load(d)


def test_frozen(tiny_llama_dir):
    bm = BaseModel.load(tiny_llama_dir)
    assert not any(p.requires_grad for p in bm.model.parameters())
    assert bm.model.dtype == torch.float32
