"""`Weights`, the one owner of a model's weights, on a tiny random model: every write is
W0 + memory total + injected adapters (+ a trial), composed afresh."""

import pytest
import torch

from reverie.base.model import BaseModel
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.lora import target_module
from reverie.memory import Memory, MemoryError_, Weights, consolidate, memory_targets
from tests.memory.test_store import T, _adapter


@pytest.fixture()
def bm(tiny_llama_dir):
    return BaseModel.load(tiny_llama_dir)


def _now(bm) -> list[torch.Tensor]:
    return [target_module(bm.model, i, T).weight.detach().clone() for i in range(bm.n_layers)]


def _merged(w0: list[torch.Tensor], *deltas: torch.Tensor) -> list[torch.Tensor]:
    """W0 + the deltas (L, d_out, d_in) summed in order, as the owner composes a weight."""
    total = deltas[0]
    for d in deltas[1:]:
        total = total + d
    return [(w.float() + total[i]).to(w.dtype) for i, w in enumerate(w0)]


def _delta(ad: Adapter, ranks: slice = slice(None)) -> torch.Tensor:
    A, B = ad.factors[T]
    return torch.stack([ad.scale * (B[i][:, ranks].float() @ A[i][ranks].float()) for i in range(A.shape[0])])


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_remove_is_exact_and_a_trial_lasts_one_write(bm, tmp_path):
    w0 = _now(bm)
    with Memory(tmp_path / "m", "fp", memory_targets(bm.model, bm.n_layers, [T])) as mem:
        weights = Weights(bm.model, mem)
        one, two = _adapter(0), _adapter(1)
        weights.inject(one)
        weights.inject(two)
        assert weights.adapters == [one, two]
        consolidate(weights, [_adapter(2)], ["c"])
        total = mem.total[T]
        assert _same(_now(bm), _merged(w0, total, _delta(one) + _delta(two)))  # the memory write kept both
        weights.remove(one)
        assert _same(_now(bm), _merged(w0, total, _delta(two)))  # as if `one` had never been injected
        with pytest.raises(MemoryError_):
            weights.remove(one)

        trial = {T: torch.ones_like(total)}
        weights.refresh(trial, injected=False)
        assert _same(_now(bm), _merged(w0, total, trial[T]))
        weights.refresh()
        assert _same(_now(bm), _merged(w0, total, _delta(two)))

        with weights.base():
            assert _same(_now(bm), w0)
        assert _same(_now(bm), _merged(w0, total, _delta(two)))
        weights.release()
        assert _same(_now(bm), w0) and weights.memory is None and not weights.adapters


def test_the_hypernetworks_bias_is_composed_once(bm, tmp_path):
    # Each adapter carries the same context-independent bias as its last ranks; a memory
    # adds it with its first item. Composed, it counts once.
    w0 = _now(bm)
    one, two = _adapter(0, bias_rank=2), _adapter(1, bias_rank=2)
    doc = slice(0, 3)
    with Memory(tmp_path / "m", "fp", memory_targets(bm.model, bm.n_layers, [T])) as mem:
        weights = Weights(bm.model, mem)
        weights.inject(one)
        assert _same(_now(bm), _merged(w0, _delta(one)))  # alone: the whole adapter, as merging it would
        weights.inject(two)
        assert _same(_now(bm), _merged(w0, _delta(one) + _delta(two, doc)))
        consolidate(weights, [_adapter(2, bias_rank=2)], ["c"])  # the memory now holds the bias
        assert mem.state["bias"]
        assert _same(_now(bm), _merged(w0, mem.total[T], _delta(one, doc) + _delta(two, doc)))


def test_a_bank_answers_under_the_routed_item_only_within_the_block(bm, tmp_path):
    with Memory(tmp_path / "m", "fp", memory_targets(bm.model, bm.n_layers, [T]), strategy="bank") as mem:
        weights = Weights(bm.model, mem)
        assert weights.is_bank
        (item,) = consolidate(weights, [_adapter(0)], ["a"], excerpts=["Ada Wood was born in Lake Amy."])
        module = target_module(bm.model, 0, T)
        assert weights.routes("Where was Ada Wood born?") == [item]
        with weights.answering("Where was Ada Wood born?") as items:
            assert items == [item] and "forward" in module.__dict__  # the item's adapter, on the fly
        assert "forward" not in module.__dict__
        with weights.answering("Where was Charles Miles born?") as items:
            assert items == [] and "forward" not in module.__dict__
        with pytest.raises(MemoryError_):
            weights.export_merged(tmp_path / "merged", bm.tokenizer)  # a bank has no one merged model
        weights.release()


def test_a_merged_memory_routes_nothing(bm, tmp_path):
    with Memory(tmp_path / "m", "fp", memory_targets(bm.model, bm.n_layers, [T])) as mem:
        weights = Weights(bm.model, mem)
        consolidate(weights, [_adapter(0)], ["a"], excerpts=["Ada Wood was born in Lake Amy."])
        assert not weights.is_bank and weights.routes("Where was Ada Wood born?") == []
        with weights.answering("Where was Ada Wood born?") as items:
            assert items == []
        weights.release()
