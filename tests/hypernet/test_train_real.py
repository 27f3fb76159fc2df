"""The real-passage recipe on a tiny model: loss, gradients, resume and export."""

import gzip
import json
import shutil

import pytest
import torch

from reverie.base.model import BaseModel
from reverie.errors import ReverieError
from reverie.hypernet import train_real
from reverie.hypernet.model import HyperNetwork
from reverie.hypernet.store import build_config, load_hypernet, save_hypernet
from reverie.world import passages as P


@pytest.fixture()
def passages(world):
    import random

    r = random.Random(0)
    out = []
    for p in world.held_out[:6]:
        qa = world.questions(p)[:2]
        out.append(P.Passage(p.name, "squad", p.name, world.biography(p, r), [(q.question, [q.answer]) for q in qa]))
    return out


@pytest.fixture()
def tiny_recipe(monkeypatch):
    """Every recipe the real-passage setup builds is shrunk to test size (and checkpoints each step)."""
    orig = train_real.RealRecipe
    # Tiny ranks: setup's default 8 becomes 4.
    monkeypatch.setattr(train_real, "RealRecipe", lambda **k: orig(**{**k, "rank": k.get("rank", 8) // 2}, latent_dim=32,
                                                                   n_blocks=1, ckpt_every=1))


@pytest.fixture()
def data(passages, tmp_path):
    f = tmp_path / "p.jsonl"
    P.save_jsonl(passages, f)
    return f


def test_step_loss_reaches_the_hypernetwork(tiny_llama_dir, passages, tmp_path):
    bm = BaseModel.load(tiny_llama_dir)
    rc = train_real.RealRecipe(pool=4, docs_per_step=2, q_per_doc=2, latent_dim=32, n_blocks=1, rank=4)
    torch.manual_seed(0)
    hyper = HyperNetwork(build_config(bm, rc.rank, rc.targets, latent_dim=32, n_blocks=1, pointer_a=True))
    pool = train_real.teacher_pool(bm, passages, rc, tmp_path / "teacher.jsonl", batch=4)
    assert 0 < len(pool) <= 4 and all(row["qas"] for row in pool)
    assert train_real.teacher_pool(bm, [], rc, tmp_path / "teacher.jsonl") == pool  # cached, not regenerated
    st = train_real.RealStep(bm, hyper, pool, rc)
    d = st.data(0)
    assert len(d["student"]) == len(d["teacher"]) and len(d["local"]) == rc.n_local * len(d["docs"])
    loss, info = st.loss(d)
    loss.backward()
    assert torch.isfinite(loss) and {"kl", "loc", "tok_agree", "kl_none", "ctx_agree"} <= set(info)
    # A fresh hypernetwork changes nothing: the student is the base model with no passage.
    assert info["kl"] == pytest.approx(info["kl_none"], abs=1e-3)
    rc.focus = 2.0
    focused, info2 = st.loss(d)
    assert info2["kl"] == info["kl"] and torch.isfinite(focused)
    # The per-rank scalers start at zero: only they (and the bias B) can get a gradient first.
    assert hyper.scale.grad is not None and hyper.scale.grad.abs().sum() > 0


def test_setup_resumes_and_exports(tiny_llama_dir, data, tmp_path, tiny_recipe):
    base = tmp_path / "base"
    shutil.copytree(tiny_llama_dir, base)
    run = tmp_path / "run"
    train_real.setup(out=str(run), model=str(base), steps=2, pool=4, docs_per_step=2, data=str(data))
    train_real.setup(out=str(run), model=str(base), steps=3, pool=4, docs_per_step=2, data=str(data),
                     export=str(tmp_path / "hn"))
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [2, 3]  # resumed, not restarted
    hyper = load_hypernet(tmp_path / "hn", BaseModel.load(base))
    assert hyper.cfg.rank == 4
    # Rank and targets are the recipe's to choose, and the exported command replays them.
    train_real.setup(out=str(tmp_path / "run2"), model=str(base), steps=1, pool=4, docs_per_step=2, data=str(data),
                     rank=12, targets=("mlp.down_proj", "mlp.up_proj"), export=str(tmp_path / "hn2"))
    hyper = load_hypernet(tmp_path / "hn2", BaseModel.load(base))
    assert hyper.cfg.rank == 6 and hyper.cfg.lora_alpha == 6.0 and set(hyper.cfg.targets) == {"mlp.down_proj", "mlp.up_proj"}
    man = json.loads((tmp_path / "hn2/manifest.json").read_text())
    assert "--rank 12 --targets mlp.down_proj,mlp.up_proj" in man["command"]


def test_a_warm_start_from_written_teacher_rows_logs_held_out_figures(tiny_llama_dir, data, tmp_path, tiny_recipe):
    first = tmp_path / "first"
    train_real.setup(out=str(first), model=str(tiny_llama_dir), steps=1, pool=4, docs_per_step=2, data=str(data),
                     eval_data=str(data), eval_every=1)
    # A second run reads the first one's teacher rows (gzipped, as a GPU lease carries them),
    # starts from its weights, and logs the same held-out batch before and during training.
    rows = tmp_path / "teacher.jsonl.gz"
    rows.write_bytes(gzip.compress((first / "teacher.jsonl").read_bytes()))
    second = tmp_path / "second"
    train_real.setup(out=str(second), model=str(tiny_llama_dir), steps=2, docs_per_step=2, data=str(data),
                     init=str(first), teacher=str(rows), eval_data=str(data), eval_every=1)
    log = [json.loads(x) for x in (second / "log.jsonl").read_text().splitlines()]
    assert log[0]["pool"] == len(train_real.read_pool(first / "teacher.jsonl"))
    evals = [r for r in log if "eval" in r]
    assert [r["step"] for r in evals] == [0, 1, 2]
    first_evals = [json.loads(x) for x in (first / "log.jsonl").read_text().splitlines() if '"eval"' in x]
    # The warm start begins where the first run ended, on the same held-out batch.
    assert evals[0]["eval"]["kl"] == pytest.approx(first_evals[-1]["eval"]["kl"], abs=2e-4)
    assert evals[0]["eval"]["kl_none"] == first_evals[0]["eval"]["kl_none"]


def test_bad_teacher_rows_and_a_mismatched_init_are_clear_errors(tiny_llama_dir, data, tmp_path, tiny_recipe):
    bad = tmp_path / "t.jsonl"
    bad.write_bytes(b"\xff\xfe not json")
    with pytest.raises(ReverieError, match="teacher pool"):
        train_real.read_pool(bad)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ReverieError, match="teacher pool"):
        train_real.read_pool(tmp_path / "empty.jsonl")
    bm = BaseModel.load(tiny_llama_dir)
    other = HyperNetwork(build_config(bm, 2, ("mlp.down_proj",), latent_dim=16, n_blocks=1, pointer_a=True))
    save_hypernet(other, tmp_path / "hn", {})
    with pytest.raises(ReverieError, match="do not fit"):
        train_real.setup(out=str(tmp_path / "run"), model=str(tiny_llama_dir), steps=1, pool=4, docs_per_step=2,
                         data=str(data), init=str(tmp_path / "hn"))


def test_keep_best_exports_the_weights_the_monitor_scored_best(tiny_llama_dir, data, tmp_path, tiny_recipe):
    run, hn = tmp_path / "run", tmp_path / "hn"
    train_real.setup(out=str(run), model=str(tiny_llama_dir), steps=4, pool=4, docs_per_step=2, data=str(data), lr=0.05,
                     eval_data=str(data), eval_every=1, export=str(hn), keep_best=True)
    evals = {r["step"]: r["eval"]["kl"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "eval" in r}
    man = json.loads((hn / "manifest.json").read_text())
    best = min(evals, key=lambda s: evals[s])
    assert man["best_step"] == best and man["best_eval_kl"] == evals[best] and "--keep-best" in man["command"]
    bm = BaseModel.load(tiny_llama_dir)
    exported = load_hypernet(hn, bm)
    last = HyperNetwork(exported.cfg)
    from safetensors.torch import load_model

    load_model(last, str(run / "ckpt" / "model.safetensors"))  # the checkpoint stays the last state, to resume
    weights = exported.state_dict()
    same = all(torch.allclose(weights[k], v.half().float()) for k, v in last.state_dict().items())
    assert same == (best == 4)


def test_teacher_answers_stop_at_their_time_budget_with_whole_passages(tiny_llama_dir, passages, tmp_path):
    bm = BaseModel.load(tiny_llama_dir)
    rc = train_real.RealRecipe(pool=6, q_per_doc=2)
    rows = train_real.teacher_pool(bm, passages, rc, tmp_path / "t.jsonl", batch=3, max_seconds=0.0)
    # One batch of 3 answers, then the budget is spent: the first passage whole, not the second's half.
    full = train_real.teacher_pool(bm, passages, rc, tmp_path / "all.jsonl", batch=3)
    assert len(full) == 6 and rows == full[:1]
