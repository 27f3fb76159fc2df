import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from reverie.hypernet import train
from reverie.hypernet.reading import input_norm, read_docs
from reverie.hypernet.store import GROW_SCALE
from tests.conftest import template_pattern


@pytest.fixture()
def small_recipe(monkeypatch):
    orig = train.HyperRecipe
    # Tiny ranks: setup's default 8 becomes 4 (and --rank 16 becomes 8).
    monkeypatch.setattr(train, "HyperRecipe", lambda **k: orig(**{**k, "rank": k.get("rank", 8) // 2}, latent_dim=32, n_blocks=1,
                                                                  ckpt_every=1, monitor_people=4))


def test_train_resume_and_export(tiny_llama_dir, tmp_path, small_recipe):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_llama_dir, base)
    train.setup(out=str(tmp_path / "run"), base=str(base), steps=2, docs_per_step=2)
    st = json.loads((tmp_path / "run/ckpt/state.json").read_text())
    assert st["step"] == 2
    train.setup(out=str(tmp_path / "run"), base=str(base), steps=3, docs_per_step=2, export=True)
    st = json.loads((tmp_path / "run/ckpt/state.json").read_text())
    assert st["step"] == 3
    log = [json.loads(x) for x in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [2, 3]  # resumed, not restarted
    assert {"acc_single", "acc_sum8", "locality", "locality_unknown"} <= set(log[-1])
    assert (base / "hypernet/hypernet.safetensors").is_file()
    man = json.loads((base / "hypernet/manifest.json").read_text())
    assert man["recipe"]["steps"] == 3 and man["sha256"]
    assert man["stages"] == [man["command"]] and f"--model {base} --docs-per-step 2" in man["command"]
    # A later stage continues the chain of commands that made its starting point.
    shutil.copytree(base / "hypernet", tmp_path / "first")
    train.setup(out=str(tmp_path / "run2"), base=str(base), steps=1, docs_per_step=2, init=str(tmp_path / "first"),
                max_seconds=1e9, export=True, n_local=6, local_mine=3)
    man2 = json.loads((base / "hypernet/manifest.json").read_text())
    assert man2["stages"] == [man["command"], man2["command"]] and "--steps 1 " in man2["command"]
    assert man2["recipe"]["n_local"] == 6 and "--n-local 6" in man2["command"]
    assert man2["recipe"]["local_mine"] == 3 and "--local-mine 3 --mine-keep 2" in man2["command"]


def test_max_seconds_fits_the_step_count(tiny_llama_dir, tmp_path, small_recipe, monkeypatch):
    monkeypatch.setattr(train, "CALIBRATE", 2)
    train.setup(out=str(tmp_path / "run"), base=str(tiny_llama_dir), steps=10_000, docs_per_step=2,
                max_seconds=0.001, eval_every=10_000, device="cpu:0")  # the non-CPU path, on the CPU
    log = [json.loads(x) for x in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    fitted = next(r for r in log if "fitted_steps" in r)
    st = json.loads((tmp_path / "run/ckpt/state.json").read_text())
    assert fitted["step"] == 2 and st["step"] == fitted["fitted_steps"] == 3  # budget spent: one more step
    assert st["recipe"]["steps"] == 3


def test_composition_stage_starts_from_another_run(tiny_llama_dir, tmp_path, small_recipe):
    from reverie.errors import ReverieError

    train.setup(out=str(tmp_path / "a"), base=str(tiny_llama_dir), steps=1, docs_per_step=2)
    train.setup(out=str(tmp_path / "b"), base=str(tiny_llama_dir), steps=1, docs_per_step=4,
                group_sizes=(2,), init=str(tmp_path / "a"), lr=1e-12)
    a = load_file(str(tmp_path / "a/ckpt/model.safetensors"))
    b = load_file(str(tmp_path / "b/ckpt/model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # started from a (lr ~ 0)
    st = json.loads((tmp_path / "b/ckpt/state.json").read_text())
    assert st["recipe"]["group_sizes"] == [2] and st["init"] == str(tmp_path / "a")
    with pytest.raises(ReverieError, match="neither a run folder"):
        train.setup(out=str(tmp_path / "c"), base=str(tiny_llama_dir), steps=1, init=str(tmp_path / "nothing"))


def test_a_higher_rank_grows_the_init_hypernetwork(tiny_llama_dir, tmp_path, small_recipe):
    import shutil

    from reverie.base.model import BaseModel
    from reverie.hypernet.store import load_hypernet

    base = tmp_path / "base"
    shutil.copytree(tiny_llama_dir, base)
    train.setup(out=str(tmp_path / "a"), base=str(base), steps=2, docs_per_step=2, lr=1e-2, export=True)
    shutil.copytree(base / "hypernet", tmp_path / "small")
    train.setup(out=str(tmp_path / "b"), base=str(base), steps=1, docs_per_step=2, init=str(tmp_path / "small"),
                rank=24, lr=1e-12, export=True)
    man = json.loads((base / "hypernet/manifest.json").read_text())
    assert man["config"]["rank"] == 12 and man["config"]["lora_alpha"] == 12.0 and "--rank 24" in man["command"]
    bm = BaseModel.load(str(base))
    small, big = load_hypernet(tmp_path / "small", bm), load_hypernet(base / "hypernet", bm)
    assert small.cfg.lora_alpha / small.cfg.rank == big.cfg.lora_alpha / big.cfg.rank == 1.0  # the old delta's scale kept
    assert torch.equal(big.latents.reshape(12, -1)[:4], small.latents)  # one target: its old components first
    assert torch.allclose(big.scale[..., :4], small.scale, atol=1e-3)
    # The new components start on: a share of the old scalers, each old one used twice.
    new = big.scale[..., 4:] / GROW_SCALE
    for layer in range(small.scale.shape[0]):
        got = sorted(new[layer, 0].tolist())
        want = sorted(small.scale[layer, 0].tolist() * 2)
        assert got == pytest.approx(want, abs=1e-2)


@pytest.mark.slow
def test_ddp_two_processes_gradients_agree(tiny_llama_dir, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", "29561", str(worker), str(tiny_llama_dir), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    g0 = load_file(str(tmp_path / "grads0.safetensors"))
    g1 = load_file(str(tmp_path / "grads1.safetensors"))
    docs = [safe_open(str(tmp_path / f"grads{i}.safetensors"), "pt").metadata()["docs"] for i in (0, 1)]
    assert docs[0] != docs[1]  # the ranks saw different data ...
    assert g0.keys() == g1.keys() and len(g0) > 5
    for k in g0:  # ... yet hold the same all-reduced gradients
        torch.testing.assert_close(g0[k], g1[k], atol=1e-6, rtol=1e-5)
    assert any(g0[k].abs().sum() > 0 for k in g0)


@pytest.mark.slow
def test_torchrun_training_command(tiny_llama_dir, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_llama_dir, base)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", "29562", "-m", "reverie.cli", "train", "hypernet", "--model", str(base),
                        "--out", str(tmp_path / "run"), "--steps", "2", "--docs-per-step", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "run/ckpt/state.json").read_text())["step"] == 2


def test_needle_documents_replace_single_documents_only(tiny_llama_dir, world, small_recipe):
    from reverie.base.model import BaseModel
    from reverie.hypernet.model import HyperNetwork
    from reverie.hypernet.store import build_config

    bm = BaseModel.load(str(tiny_llama_dir))
    hyper = HyperNetwork(build_config(bm, 4, ("mlp.down_proj",), latent_dim=32, n_blocks=1))
    rc = train.HyperRecipe(docs_per_step=4, group_sizes=(1,), p_needle=1.0)
    d = train.Step(bm, hyper, world, rc).data(0)
    assert all("special magic number" in doc for doc in d["docs"])
    assert len(d["teacher"]) == len(d["student"]) == 4  # one question each: the number
    loss, _ = train.Step(bm, hyper, world, rc).loss(d)
    assert torch.isfinite(loss)
    grouped = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=4, group_sizes=(2,), p_needle=1.0)).data(0)
    assert not any("special magic number" in doc for doc in grouped["docs"])  # summed groups: people only


def test_local_rows_can_continue_with_the_base_models_own_answers(tiny_llama_dir, world, small_recipe):
    from reverie.base.data import IGNORE
    from reverie.base.model import BaseModel
    from reverie.base.prompt import answer_text
    from reverie.hypernet.model import HyperNetwork
    from reverie.hypernet.store import build_config

    bm = BaseModel.load(str(tiny_llama_dir))
    hyper = HyperNetwork(build_config(bm, 4, ("mlp.down_proj",), latent_dim=32, n_blocks=1))
    gold = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=4)).data(0)
    own = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=4, local_own=True)).data(0)
    assert gold["docs"] == own["docs"] and gold["student"] == own["student"]  # only locality rows change
    assert len(gold["local"]) == len(own["local"]) > 0
    differs = 0
    for (gi, (ids_g, lab_g)), (gj, (ids_o, lab_o)) in zip(gold["local"], own["local"], strict=True):
        q_len = sum(x == IGNORE for x in lab_g)
        assert gi == gj and ids_g[:q_len] == ids_o[:q_len]  # same question
        question = bm.tokenizer.decode(ids_g[1:q_len]).removeprefix("Question: ").removesuffix("\nAnswer:")
        expected = bm.tokenizer.encode(answer_text(bm.answer(question)), add_special_tokens=False)
        assert ids_o[q_len:] == expected and lab_o[q_len:] == expected
        differs += ids_o[q_len:] != ids_g[q_len:]
    assert differs  # an untrained model does not say the gold answers


def test_mined_locality_rows_are_the_candidates_nearest_to_flipping(tiny_llama_dir, world, small_recipe):
    from reverie.base.model import BaseModel
    from reverie.hypernet.lora import applied, concat
    from reverie.hypernet.model import HyperNetwork
    from reverie.hypernet.store import build_config

    bm = BaseModel.load(str(tiny_llama_dir))
    torch.manual_seed(0)
    hyper = HyperNetwork(build_config(bm, 4, ("mlp.down_proj",), latent_dim=32, n_blocks=1))
    with torch.no_grad():
        for p in hyper.parameters():  # a fresh hypernetwork changes nothing; this one must
            p.add_(torch.randn_like(p) * 0.3)
    plain = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=2))
    step = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=2, local_mine=5, mine_keep=2))
    d0, d = plain.data(3), step.data(3)
    assert all(d0[k] == d[k] for k in ("docs", "student", "local"))  # mining draws from its own stream
    assert d0["mine"] == [] and [g for g, _ in d["mine"]] == [0] * 5 + [1] * 5
    hidden, pad, ins = read_docs(bm, d["docs"], hyper.key_targets)
    f, bias = hyper(hidden, pad, ins)
    n = len(d["docs"])  # groups of one: each document's factors beside the bias adapter, as loss() builds them
    row_f = concat([f, {t: (a[None].expand(n, -1, -1, -1), b[None].expand(n, -1, -1, -1)) for t, (a, b) in bias.items()}])
    kept, kept_score = step.mined(d, {t: (A.detach(), B.detach()) for t, (A, B) in row_f.items()}, bm.tokenizer.pad_token_id)

    def drop(g: int, row: tuple) -> float:  # one candidate alone, scored the slow way
        ids, lab = torch.tensor([row[0]]), torch.tensor([row[1]])
        with torch.no_grad():
            base = bm.model(ids).logits[0, :-1]
            with applied(bm.model, {t: (A[g:g + 1].detach(), B[g:g + 1].detach()) for t, (A, B) in row_f.items()}, step.scale):
                ad = bm.model(ids).logits[0, :-1]
        tgt = lab[0, 1:]
        m = (tgt != -100) & (base.argmax(-1) == tgt.clamp_min(0))
        return float((train.margin(base[m], tgt[m]).clamp(max=train.MINE_CAP) - train.margin(ad[m], tgt[m])).max())

    assert [g for g, _ in kept] == [0, 0, 1, 1]
    for g in (0, 1):
        scores = sorted((drop(g, row) for gi, row in d["mine"] if gi == g), reverse=True)
        got = [drop(g, row) for gi, row in kept if gi == g]
        assert got == pytest.approx(scores[:2], abs=1e-4) and scores[0] > scores[-1]
    assert kept_score == pytest.approx(sum(drop(g, row) for g, row in kept) / 4, abs=1e-4)
    loss, info = step.loss(d)
    assert torch.isfinite(loss) and info["mine_drop"] > 0
    both = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=2, local_mine=4, mine_strangers=True)).data(3)
    base_names = {p.name for p in world.base}
    asked = [bm.tokenizer.decode(ids) for _, (ids, _) in both["mine"]]
    about_base = [any(n in q for n in base_names) for q in asked]
    assert about_base == [True, False] * 4  # every other candidate is a stranger


def test_read_docs_hidden_states_match_the_whole_models_pass(tiny_llama_dir):
    from reverie.base.model import BaseModel

    bm = BaseModel.load(str(tiny_llama_dir))
    docs = ["Ada Lovelace was born in London.", "A longer second document, so that the first one is padded."]
    hidden, pad, ins = read_docs(bm, docs, ("mlp.down_proj",))
    for i, d in enumerate(docs):
        ids = torch.tensor([bm.encode(bm.format.document(d))])
        with torch.no_grad():
            hs = bm.model(ids, output_hidden_states=True).hidden_states  # the whole model, output head included
        n = ids.shape[1]
        assert not pad[i, :n].any() and pad[i, n:].all()
        for layer in range(bm.n_layers):
            want = input_norm(bm.model, layer)(hs[layer][0])
            torch.testing.assert_close(hidden[i, layer, :n], want, rtol=1e-4, atol=1e-5)
    assert ins["mlp.down_proj"].shape[:2] == (2, bm.n_layers)


def test_document_questions_can_take_other_forms_but_never_a_held_out_or_base_only_one(tiny_llama_dir, world):
    from reverie.base.model import BaseModel
    from reverie.hypernet.model import HyperNetwork
    from reverie.hypernet.store import build_config
    from reverie.world import templates as T

    bm = BaseModel.load(str(tiny_llama_dir))
    hyper = HyperNetwork(build_config(bm, 4, ("mlp.down_proj",), latent_dim=32, n_blocks=1))
    plain = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=4)).data(0)
    same = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=4, p_paraphrase=0.0)).data(0)
    assert plain["student"] == same["student"]  # no extra draw at 0
    step = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=4, p_paraphrase=1.0))
    asked = set()
    for s in range(6):
        for _, (ids, _lab) in step.data(s)["student"]:
            asked.add(bm.tokenizer.decode(ids[1:]).split("Question: ", 1)[1].split("\nAnswer:")[0])
    banks = {b: [template_pattern(t) for a in T.ATTRIBUTES for t in bank[a]]
             for b, bank in (("para", T.QUESTIONS_PARAPHRASE), ("which", T.QUESTIONS_WHICH), ("held", T.QUESTIONS_HELDOUT),
                             ("train", T.QUESTIONS_TRAIN))}
    kinds = [{b for b, fs in banks.items() if any(f.match(q) for f in fs)} for q in asked]
    assert all(k and "held" not in k and "train" not in k for k in kinds), asked
    assert any("para" in k for k in kinds) and any("which" in k for k in kinds)
    assert not any("school" in q.lower() for q in asked)  # the base model's words alone (QUESTIONS_BASE_WORDS)


def test_margin_hinge_charges_only_eroded_margins_of_the_base_models_greedy_tokens():
    base = torch.tensor([[3.0, 1.0, 0.0],   # greedy 0, margin 2
                         [0.5, 0.0, 0.2],   # greedy 0, margin 0.3
                         [0.0, 9.0, 0.0],   # greedy 1, margin 9: capped at MARGIN_CAP
                         [0.0, 1.0, 0.0]])  # greedy 1, but the label is 0: not protected
    tok = torch.tensor([0, 0, 1, 0])
    assert torch.allclose(train.margin(base, tok), torch.tensor([2.0, 0.3, 9.0, -1.0]))
    assert train.margin_hinge(base.clone(), base, tok) == 0  # the base model itself owes nothing
    student = torch.tensor([[3.0, 2.5, 0.0],   # margin 0.5: 1.5 short of 2
                            [0.0, 0.5, 0.0],   # flipped: margin -0.5, 0.8 short of 0.3
                            [0.0, 9.0, 0.0],   # margin 9, past the cap: nothing owed
                            [0.0, 5.0, 0.0]])  # not protected
    student.requires_grad_(True)
    h = train.margin_hinge(student, base, tok)
    assert torch.isclose(h, torch.tensor((1.5 + 0.8 + 0.0) / 3))
    h.backward()
    assert student.grad is not None and student.grad[3].abs().sum() == 0 and student.grad[2].abs().sum() == 0
    assert student.grad[0, 0] < 0 and student.grad[0, 1] > 0  # raise the label, lower the runner-up
    none = train.margin_hinge(student, base, torch.tensor([2, 2, 2, 2]))
    assert none == 0 and none.requires_grad


def test_bias_locality_term_charges_what_the_bias_alone_moves(tiny_llama_dir, world):
    from reverie.base.model import BaseModel
    from reverie.hypernet.model import HyperNetwork
    from reverie.hypernet.store import build_config

    bm = BaseModel.load(str(tiny_llama_dir))
    torch.manual_seed(0)
    hyper = HyperNetwork(build_config(bm, 4, ("mlp.down_proj",), latent_dim=32, n_blocks=1))
    rc = train.HyperRecipe(docs_per_step=2, local_own=True)
    d = train.Step(bm, hyper, world, rc).data(0)
    plain, info = train.Step(bm, hyper, world, rc).loss(d)
    assert "loc_bias" not in info
    with_term, info = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=2, local_own=True, local_bias=3.0)).loss(d)
    assert info["loc_bias"] < 1e-6 and torch.allclose(plain, with_term)  # a fresh bias (B = 0) moves nothing
    with torch.no_grad():
        for b in hyper.bias_b.values():
            b.normal_(std=0.5)
    plain, _ = train.Step(bm, hyper, world, rc).loss(d)
    with_term, info = train.Step(bm, hyper, world, train.HyperRecipe(docs_per_step=2, local_own=True, local_bias=3.0)).loss(d)
    assert info["loc_bias"] > 1e-4
    assert torch.allclose(with_term - plain, torch.tensor(3.0 * info["loc_bias"]), rtol=1e-3, atol=3e-4)  # the log rounds to 1e-4


def test_bias_fade_scales_the_bias_down_to_zero_and_ships_it_at_zero(tiny_llama_dir, tmp_path, small_recipe):
    import shutil

    from reverie.base.model import BaseModel
    from reverie.hypernet.model import HyperNetwork
    from reverie.hypernet.store import build_config

    bm = BaseModel.load(str(tiny_llama_dir))
    hyper = HyperNetwork(build_config(bm, 2, ("mlp.down_proj",), latent_dim=16, n_blocks=1))
    with torch.no_grad():
        for b in hyper.bias_b.values():
            b.fill_(1.0)
    seen = []
    for step in range(1, 6):
        train.fade_bias(hyper, step, 4)
        seen.append(next(iter(hyper.bias_b.values())).mean().item())
    assert seen == pytest.approx([0.75, 0.5, 0.25, 0.0, 0.0])  # 1 - step/N of the start, then zero
    base = tmp_path / "base"
    shutil.copytree(tiny_llama_dir, base)
    train.setup(out=str(tmp_path / "run"), base=str(base), steps=3, docs_per_step=2, bias_fade=2, export=True)
    shipped = load_file(str(base / "hypernet/hypernet.safetensors"))
    assert all(v.abs().max() == 0 for k, v in shipped.items() if k.startswith("bias_b"))
    man = json.loads((base / "hypernet/manifest.json").read_text())
    assert man["recipe"]["bias_fade"] == 2 and "--bias-fade 2" in man["command"]


def test_targets_are_configurable_end_to_end(tiny_llama_dir, tmp_path, small_recipe):
    """--targets: a hypernetwork writing two modules per layer trains, resumes only with the
    same shape, injects adapters for both (peft format), and a new memory holds both totals."""
    import shutil

    from typer.testing import CliRunner

    from reverie.cli import app
    from reverie.errors import ReverieError
    from reverie.hypernet.adapter import Adapter
    from reverie.learner import Learner

    base = tmp_path / "base"
    shutil.copytree(tiny_llama_dir, base)
    two = ("mlp.down_proj", "self_attn.o_proj")
    train.setup(out=str(tmp_path / "run"), base=str(base), steps=2, docs_per_step=2, lr=1e-2, targets=two, export=True)
    man = json.loads((base / "hypernet/manifest.json").read_text())
    assert sorted(man["config"]["targets"]) == sorted(two) and "--targets mlp.down_proj,self_attn.o_proj" in man["command"]
    with pytest.raises(ReverieError, match="another shape: targets"):
        train.setup(out=str(tmp_path / "run"), base=str(base), steps=3, docs_per_step=2)
    with pytest.raises(ReverieError, match="not a Linear module.*self_attn.q_proj"):
        train.setup(out=str(tmp_path / "x"), base=str(base), steps=1, targets=("mlp.nothing",))
    with pytest.raises(ReverieError, match="do not fit"):  # an init of another shape
        train.setup(out=str(tmp_path / "y"), base=str(base), steps=1, init=str(base / "hypernet"))

    learner = Learner.load(base)
    ad = learner.inject("Ann Lee was born in Paris. She works for Acme.")
    assert set(ad.factors) == set(two) and all(float(B.abs().sum()) > 0 for _, B in ad.factors.values())
    saved = Adapter.load(ad.save(tmp_path / "ad"))
    assert set(saved.factors) == set(two)
    assert set(json.loads((tmp_path / "ad/adapter_config.json").read_text())["target_modules"]) == {"down_proj", "o_proj"}

    doc = tmp_path / "doc.txt"
    doc.write_text("Ann Lee was born in Paris.")
    r = CliRunner().invoke(app, ["read", str(doc), "--memory", str(tmp_path / "mem"), "--model", str(base), "--json"])
    assert r.exit_code == 0, r.output
    from reverie.base.model import BaseModel
    from reverie.hypernet.model import fingerprint
    from reverie.memory import Memory, memory_targets

    bm = BaseModel.load(str(base))
    with Memory(tmp_path / "mem", fingerprint(bm.model), memory_targets(bm.model, bm.n_layers, ["mlp.down_proj"]),
                readonly=True) as mem:
        assert set(mem.total) == set(two)  # created with the hypernetwork's targets, whatever the caller passes now
