"""The LoRA fit behind sleep-time learning: the cached lower layers give the same function,
and a fit makes the model answer its rows."""

from __future__ import annotations

import pytest
import torch

from reverie.base.model import BaseModel
from reverie.hypernet.fit import FitConfig, Upper, encode_rows, fit_batch, fit_rows
from reverie.hypernet.lora import applied


@pytest.fixture(scope="module")
def bm() -> BaseModel:
    return BaseModel.load()  # the embedded world model: a 4-layer Llama


ROWS = [("Where does Quorra Vantablack work?", "Lake Amy"), ("Who employs Quorra Vantablack?", "Johnson and Sons")]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_top_layers_from_the_cache_equal_the_whole_model(bm: BaseModel, k: int) -> None:
    ids, _, mask = encode_rows(bm, ROWS)
    whole = bm.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    up = Upper(bm, k, ids, mask)
    assert up.first == bm.n_layers - k
    real = mask.bool()  # padding positions may differ; the rows' own tokens must not
    assert torch.allclose(up()[real], whole[real], atol=1e-4)


def test_rows_are_scored_on_answer_tokens_only_and_padding_is_masked_by_length(bm: BaseModel) -> None:
    ids, lab, mask = encode_rows(bm, [("Q one?", "a"), ("A much longer question than the first one?", "b c d")])
    assert ids.shape == lab.shape == mask.shape
    for row in range(2):
        n = int(mask[row].sum())
        assert (lab[row, n:] == -100).all()
        scored = lab[row][lab[row] != -100].tolist()
        assert bm.tokenizer.decode(scored).strip().startswith(["a", "b c d"][row])


def test_a_fit_makes_the_model_answer_its_rows_and_stops_when_they_are_answered(bm: BaseModel) -> None:
    before = bm.answer_batch([bm.prompt(q) for q, _ in ROWS])
    assert before != [a for _, a in ROWS]
    cfg = FitConfig(layers=2, rank=4, steps=200, lr=1e-2, stop_loss=0.05, dtype="float32")
    ad = fit_rows(bm, ROWS, cfg)
    assert ad.meta["steps"] < 200 and ad.meta["worst_row_loss"] < 0.05
    A, B = ad.factors["mlp.down_proj"]
    assert A.shape[0] == B.shape[0] == bm.n_layers
    assert not B[: bm.n_layers - 2].any()  # layers below the adapted ones carry nothing
    with applied(bm.model, ad.factors, ad.scale):
        after = bm.answer_batch([bm.prompt(q) for q, _ in ROWS])
    assert after == [a for _, a in ROWS]


def test_a_warm_start_from_the_fitted_factors_needs_fewer_steps(bm: BaseModel) -> None:
    cfg = FitConfig(layers=2, rank=4, steps=200, lr=1e-2, stop_loss=0.05, dtype="float32")
    cold = fit_rows(bm, ROWS, cfg)
    A, B = cold.factors["mlp.down_proj"]
    warm = fit_rows(bm, ROWS, cfg, init={"mlp.down_proj": (A, B * cold.scale)})
    assert warm.meta["steps"] < cold.meta["steps"]


def test_a_teacher_fit_moves_the_model_to_the_teachers_distribution(bm: BaseModel) -> None:
    # The distillation loss (``DistillInjector``): KL to a teacher's logits at each answer token.
    ids, lab, mask = encode_rows(bm, ROWS)
    tgt = lab[:, 1:][lab[:, 1:] != -100]  # (K,) the answer tokens, in order
    teacher = torch.full((len(tgt), len(bm.tokenizer)), -10.0).scatter_(1, tgt[:, None], 10.0)  # (K, V): sure of each
    cfg = FitConfig(layers=None, rank=4, steps=60, lr=1e-2, stop_loss=0.0, dtype="float32")
    ad = fit_batch(bm, ids, lab, mask, cfg, teacher=teacher)
    assert ad.meta["steps"] == 60 and ad.meta["final_loss"] < 0.1
    with applied(bm.model, ad.factors, ad.scale):
        after = bm.answer_batch([bm.prompt(q) for q, _ in ROWS])
    assert after == [a for _, a in ROWS]
