import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from reverie.base.model import BaseModel
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.lora import target_module
from reverie.memory import (
    MERGES,
    Guard,
    GuardConfig,
    Memory,
    MemoryError_,
    Weights,
    consolidate,
    memory_targets,
)
from reverie.memory.merges import dense

T = "mlp.down_proj"


def _adapter(seed: int, L=2, r=3, d_in=64, d_out=32, bias_rank=0) -> Adapter:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(L, r + bias_rank, d_in, generator=g) * 0.1
    B = torch.randn(L, d_out, r + bias_rank, generator=g) * 0.1
    return Adapter({T: (A, B)}, 2.0, meta={"bias_rank": bias_rank} if bias_rank else {})


def _mem(path, strategy="add", **kw) -> Memory:
    return Memory(path, "fp", {T: (2, 32, 64)}, strategy=strategy, strategy_kw=kw)


def test_add_sums_and_forget_is_exact(tmp_path):
    with _mem(tmp_path / "m") as m:
        ids = m.add([_adapter(0), _adapter(1)], ["a", "b"])
        ids += m.add([_adapter(2)], ["c"])
        want = sum(2.0 * (_adapter(i).factors[T][1] @ _adapter(i).factors[T][0]) for i in range(3))
        assert torch.allclose(m.total[T], want, atol=1e-6)
        assert m.forget(ids[1]) is True
        want2 = sum(2.0 * (_adapter(i).factors[T][1] @ _adapter(i).factors[T][0]) for i in (0, 2))
        assert torch.allclose(m.total[T], want2, atol=1e-6)
        assert [e["event"] for e in m.ledger()] == ["add", "add", "add", "forget"]
    # persisted: reopen and find the same state
    with _mem(tmp_path / "m") as m2:
        assert torch.allclose(m2.total[T], want2, atol=1e-6)
        assert len(m2.items) == 2


def test_forgetting_a_bank_item_leaves_the_total_at_zero(tmp_path):
    # A bank's items never enter the total: subtracting one on forget would leave every
    # question, routed or not, answered under minus that item.
    with _mem(tmp_path / "m", strategy="bank") as m:
        ids = m.add([_adapter(0), _adapter(1)], ["a", "b"])
        m.forget(ids[0])
        assert float(m.total[T].abs().max()) == 0.0
        assert m.items == [ids[1]]


def test_bias_is_added_once(tmp_path):
    with _mem(tmp_path / "m") as m:
        m.add([_adapter(0, bias_rank=2), _adapter(1, bias_rank=2)], ["a", "b"])
        m.add([_adapter(2, bias_rank=2)], ["c"])
        parts = [_adapter(i, bias_rank=2).factors[T] for i in range(3)]
        want = sum(2.0 * (B[..., :3] @ A[:, :3]) for A, B in parts) + 2.0 * (parts[0][1][..., 3:] @ parts[0][0][:, 3:])
        assert torch.allclose(m.total[T], want, atol=1e-5)


def test_second_writer_is_refused(tmp_path):
    with _mem(tmp_path / "m"):
        with pytest.raises(MemoryError_, match="another process"):
            _mem(tmp_path / "m")


def test_corrupt_total_is_detected(tmp_path):
    with _mem(tmp_path / "m") as m:
        m.add([_adapter(0)], ["a"])
        total = tmp_path / "m" / m.state["total"]
    total.write_bytes(total.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(MemoryError_, match="checksum"):
        _mem(tmp_path / "m")


@pytest.mark.parametrize("strategy", ["add", "orthogonal", "bank"])
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_lost_total_is_rebuilt_from_the_items(tmp_path, strategy, damage):
    with _mem(tmp_path / "m", strategy) as m:
        m.add([_adapter(0, bias_rank=1), _adapter(1, bias_rank=1)], ["a", "b"])
        m.add([_adapter(2, bias_rank=1)], ["c"])
        want, state = {t: W.clone() for t, W in m.total.items()}, dict(m.strategy.state)
        total = tmp_path / "m" / m.state["total"]
    total.unlink() if damage == "missing" else total.write_bytes(b"not a safetensors file")
    with pytest.raises(MemoryError_, match="memories repair"):
        _mem(tmp_path / "m")
    with Memory(tmp_path / "m", "fp", {T: (2, 32, 64)}, repair=True) as m:
        assert m.repaired == "rebuilt the total from 3 items, exactly"
        assert torch.allclose(m.total[T], want[T], atol=1e-5)
        assert state.keys() == m.strategy.state.keys()
        assert all(torch.allclose(m.strategy.state[k], v, atol=1e-5) for k, v in state.items())
        assert m.ledger()[-1]["event"] == "repair"
    with _mem(tmp_path / "m") as m:  # sound again: opens without repair
        assert torch.allclose(m.total[T], want[T], atol=1e-5) and m.repaired is None


def test_wrong_model_is_refused(tmp_path):
    _mem(tmp_path / "m").close()
    with pytest.raises(MemoryError_, match="another base model"):
        Memory(tmp_path / "m", "other", {T: (2, 32, 64)})


def test_adapter_of_other_targets_is_refused_and_nothing_changes(tmp_path):
    with _mem(tmp_path / "m") as m:
        m.add([_adapter(0)], ["a"])
        before = (json.loads((tmp_path / "m" / "memory.json").read_text()), m.total[T].clone())
        other = Adapter({"self_attn.o_proj": _adapter(1).factors[T]}, 2.0)
        with pytest.raises(MemoryError_, match="this adapter writes self_attn.o_proj .*use a new --memory"):
            m.add([_adapter(2), other], ["b", "c"])
        with pytest.raises(MemoryError_, match=r"mlp.down_proj \(2, 32, 64\); this adapter writes mlp.down_proj \(2, 32, 48\)"):
            m.add([_adapter(3, d_in=48)], ["d"])
        assert json.loads((tmp_path / "m" / "memory.json").read_text()) == before[0]
        assert torch.equal(m.total[T], before[1]) and len(m.items) == 1


def test_snapshot_and_rollback(tmp_path):
    with _mem(tmp_path / "m") as m:
        m.add([_adapter(0)], ["a"])
        before = m.total[T].clone()
        m.snapshot("s1")
        m.add([_adapter(1)], ["b"])
        assert not torch.allclose(m.total[T], before)
        m.rollback("s1")
        assert torch.equal(m.total[T], before)
        assert len(m.items) == 1
        with pytest.raises(MemoryError_, match="no snapshot"):
            m.rollback("nope")


@pytest.mark.parametrize("name", sorted(MERGES))
def test_every_strategy_runs_and_persists(tmp_path, name):
    with _mem(tmp_path / name, name) as m:
        for i in range(0, 6, 2):
            m.add([_adapter(i), _adapter(i + 1)], [str(i), str(i + 1)])
        assert all(torch.isfinite(W).all() for W in m.total.values())
        total = m.total[T].clone()
    with _mem(tmp_path / name, name) as m2:
        assert torch.equal(m2.total[T], total)


def test_orthogonal_projects_away_from_earlier_rows(tmp_path):
    with _mem(tmp_path / "m", "orthogonal") as m:
        m.add([_adapter(0)], ["a"])
        i2 = m.add([_adapter(1)], ["b"])[0]
        A0 = _adapter(0).factors[T][0]
        A1 = m.factors(i2)[T][0]
        assert (A1 @ A0.transpose(1, 2)).abs().max() < 1e-4


def test_svd_keeps_a_fixed_rank(tmp_path):
    with _mem(tmp_path / "m", "svd", period=4, budget=2) as m:
        m.add([_adapter(i) for i in range(4)], list("abcd"))
        assert int(torch.linalg.matrix_rank(m.total[T][0])) <= 2
        assert all(e["exact"] is False for e in m.ledger() if e["event"] == "add")


def test_export_as_adapter_reproduces_total(tmp_path):
    with _mem(tmp_path / "m") as m:
        m.add([_adapter(0), _adapter(1)], ["a", "b"])
        ad = m.as_adapter()
        assert torch.allclose(dense({T: (ad.factors[T][0], ad.factors[T][1])})[T], m.total[T], atol=1e-5)


def test_attached_forget_restores_weights(tmp_path, tiny_llama_dir):
    bm = BaseModel.load(tiny_llama_dir)
    w0 = [target_module(bm.model, i, T).weight.detach().clone() for i in range(bm.n_layers)]
    with Memory(tmp_path / "m", "fp", memory_targets(bm.model, bm.n_layers, [T])) as m:
        weights = Weights(bm.model, m)
        ids = consolidate(weights, [_adapter(0), _adapter(1)], ["a", "b"])
        assert not torch.allclose(target_module(bm.model, 0, T).weight, w0[0])
        for i in ids:
            m.forget(i)
        weights.refresh()
        for i in range(bm.n_layers):
            assert torch.allclose(target_module(bm.model, i, T).weight, w0[i], atol=1e-6)


def test_guard_refuses_a_destructive_update(tmp_path, tiny_llama_dir, world):
    bm = BaseModel.load(tiny_llama_dir)
    guard = Guard(bm, world, GuardConfig(n_closed=8, n_context=4, max_changed=0.0, max_kl=1e-6, tries=2))
    with Memory(tmp_path / "m", "fp", memory_targets(bm.model, bm.n_layers, [T])) as m:
        weights = Weights(bm.model, m)
        big = _adapter(0)
        big.factors[T] = (big.factors[T][0] * 100, big.factors[T][1] * 100)
        ids = consolidate(weights, [big], ["x"], guard)
        assert ids == [None]
        assert m.ledger()[-1]["event"] == "refused"
        assert m.total[T].abs().max() == 0
        ids = consolidate(weights, [_adapter(1)], ["y"], Guard(bm, world, GuardConfig(n_closed=8, n_context=4, max_changed=1.0, max_kl=1e9, max_drift=1.0)))
        assert ids[0] is not None and m.item(ids[0])["guard"]["decision"] == "accepted"


WRITER = """
import sys, torch
sys.path.insert(0, {root!r})
from tests.memory.test_store import _adapter, _mem
m = _mem({path!r})
i = len(m.items)
while True:
    m.add([_adapter(i), _adapter(i + 1)], [str(i), str(i + 1)])
    if i % 3 == 0 and m.items:
        m.forget(m.items[0])
    i += 2
"""


@pytest.mark.slow
def test_killed_writer_never_corrupts(tmp_path):
    path = str(tmp_path / "m")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for k in range(8):
        p = subprocess.Popen([sys.executable, "-c", WRITER.format(root=root, path=path)])
        time.sleep(3.0 + 0.41 * k)  # past the imports, then at a different point of a write each time
        p.send_signal(signal.SIGKILL)
        p.wait()
        with _mem(path) as m:  # opens: checksums verified, leftovers swept
            want = torch.zeros(2, 32, 64)
            for i in m.items:
                want += dense(m.factors(i))[T]
            assert torch.allclose(m.total[T], want, atol=1e-4)
            assert len(m.ledger()) == m.state["ledger_lines"]
            state = json.loads((tmp_path / "m" / "memory.json").read_text())
            assert state["total"] == m.state["total"]


def test_an_item_file_is_mapped_as_safetensors_reads_it_and_corruption_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    from reverie.memory.store import MemoryError_, _mapped

    f = tmp_path / "item.safetensors"
    tensors = {"raw.mlp.down_proj.A": torch.randn(4, 8, 32), "raw.mlp.down_proj.B": torch.randn(4, 16, 8),
               "half": torch.randn(3, 5).half()}
    save_file(tensors, str(f))
    got, ref = _mapped(f), load_file(str(f))
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) and got[k].dtype == ref[k].dtype for k in ref)
    got["half"] += 1  # copy-on-write: the file keeps what was saved
    assert torch.equal(load_file(str(f))["half"], ref["half"])
    for bad in (b"", b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}", f.read_bytes()[:40]):
        f.write_bytes(bad)
        with pytest.raises(MemoryError_, match="corrupt memory item"):
            _mapped(f)


def test_the_answering_buffer_gives_each_items_own_factors_and_forgets_them(tmp_path, monkeypatch):
    import reverie.memory.store as store

    monkeypatch.setattr(store, "SLAB_ITEMS", 2)  # three items through two slots: one is evicted
    mem = _mem(tmp_path / "m", strategy="bank")
    ids = mem.add([_adapter(s) for s in range(3)], ["a", "b", "c"])
    big = mem.add([_adapter(9, r=12)], ["d"])[0]  # more than twice the first item: read, not kept

    def same(x, y):
        return x.keys() == y.keys() and all(torch.equal(x[t][0], y[t][0]) and torch.equal(x[t][1], y[t][1]) for t in x)

    for i in ids + ids[::-1] + [big, ids[0]]:
        assert same(mem.factors(i, slab=True), mem.factors(i))
    assert len(mem._slots) == 2 and big not in mem._slots  # the big item evicted nothing
    mem.forget(ids[0])
    assert not mem._slots
    (tmp_path / "m" / "items" / f"{ids[1]}.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(MemoryError_, match="corrupt memory item"):
        mem.factors(ids[1], slab=True)
    with pytest.raises(MemoryError_, match="no memory item"):
        mem.factors("nope", slab=True)
    assert same(mem.factors(ids[2], slab=True), mem.factors(ids[2]))
    mem.close()
