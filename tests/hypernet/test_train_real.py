"""The real-passage recipe on a tiny model: loss, gradients, resume and export."""

import json
import shutil

import pytest
import torch

from reverie.base.model import BaseModel
from reverie.hypernet import train_real
from reverie.hypernet.model import HyperNetwork
from reverie.hypernet.store import build_config, load_hypernet
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
    assert torch.isfinite(loss) and {"kl", "loc", "tok_agree"} <= set(info)
    # The per-rank scalers start at zero: only they (and the bias B) can get a gradient first.
    assert hyper.scale.grad is not None and hyper.scale.grad.abs().sum() > 0


def test_setup_resumes_and_exports(tiny_llama_dir, passages, tmp_path, monkeypatch):
    orig = train_real.RealRecipe
    monkeypatch.setattr(train_real, "RealRecipe", lambda **k: orig(**k, latent_dim=32, n_blocks=1, rank=4, ckpt_every=1))
    base = tmp_path / "base"
    shutil.copytree(tiny_llama_dir, base)
    data = tmp_path / "p.jsonl"
    P.save_jsonl(passages, data)
    run = tmp_path / "run"
    train_real.setup(out=str(run), model=str(base), steps=2, pool=4, docs_per_step=2, data=str(data))
    train_real.setup(out=str(run), model=str(base), steps=3, pool=4, docs_per_step=2, data=str(data),
                     export=str(tmp_path / "hn"))
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [2, 3]  # resumed, not restarted
    hyper = load_hypernet(tmp_path / "hn", BaseModel.load(base))
    assert hyper.cfg.rank == 4
