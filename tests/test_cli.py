import pytest
from typer.testing import CliRunner

from reverie.cli import app

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("demo", "world", "train", "eval", "bench", "inject", "ask"):
        assert cmd in r.output


def test_world_sample_is_deterministic():
    a = runner.invoke(app, ["world", "sample", "--n", "2", "--seed", "3"])
    b = runner.invoke(app, ["world", "sample", "--n", "2", "--seed", "3"])
    assert a.exit_code == 0 and a.output == b.output and "Q:" in a.output


@pytest.mark.parametrize("argv", [
    ["world", "sample", "--n", "0"],
    ["bench", "qa", "--n-people", "0"],  # was a bm25s traceback
    ["bench", "sequential", "--T", "0"],  # was a ZeroDivisionError
    ["bench", "long", "--n-per-length", "-1"],
    ["train", "hypernet", "--p-needle", "1.5"],
    ["train", "policy", "--budget", "0"],
])
def test_counts_and_shares_out_of_range_are_refused_before_any_work(argv):
    r = runner.invoke(app, argv)
    assert r.exit_code == 2 and "Invalid value for" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(("argv", "named"), [
    (["--keep-best", "--pool", "10"], "--pool, --keep-best: only for the real-model recipe"),
    (["--model", "smollm2", "--local-own", "--group-sizes", "1,2"], "--group-sizes, --local-own: only for the embedded model"),
    (["--pool", "4000"], "--pool: only for the real-model recipe"),  # its default, but given
])
def test_options_of_the_other_training_recipe_are_refused_not_ignored(argv, named):
    r = runner.invoke(app, ["train", "hypernet", *argv])
    assert r.exit_code == 1 and named in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(("argv", "module", "expect"), [
    (["--model", "smollm2"], "reverie.hypernet.train_real", {}),  # the real recipe's own defaults
    (["--model", "smollm2", "--lr", "1e-4", "--steps", "5"], "reverie.hypernet.train_real", {"lr": 1e-4, "steps": 5}),
    ([], "reverie.hypernet.train", {}),
    (["--docs-per-step", "3"], "reverie.hypernet.train", {"docs_per_step": 3}),
])
def test_train_hypernet_passes_only_what_was_given_so_each_recipe_keeps_its_defaults(monkeypatch, argv, module, expect):
    import importlib

    seen: dict = {}
    monkeypatch.setattr(importlib.import_module(module), "setup", lambda **kw: seen.update(kw))
    r = runner.invoke(app, ["train", "hypernet", *argv])
    assert r.exit_code == 0, r.output
    assert {k: seen[k] for k in ("steps", "docs_per_step", "lr") if k in seen} == expect


def test_missing_model_is_one_clear_line(tmp_path):
    r = runner.invoke(app, ["eval", "base", "--model", str(tmp_path / "nope")])
    assert r.exit_code == 1
    assert "model path not found" in r.output
    assert "Traceback" not in r.output


def test_ask_with_tiny_model(tiny_llama_dir, tmp_path):
    ctx = tmp_path / "doc.txt"
    ctx.write_bytes(b"Ada was born in \xff London.")  # not UTF-8: decoded with replacement
    r = runner.invoke(app, ["ask", "Where was Ada born?", "--model", str(tiny_llama_dir), "--context", str(ctx)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ask", "   ", "--model", str(tiny_llama_dir)])
    assert r.exit_code == 1 and "empty question" in r.output


def test_inject_missing_file(tiny_llama_dir, tmp_path):
    r = runner.invoke(app, ["inject", str(tmp_path / "missing.txt"), "--save", str(tmp_path / "ad"),
                            "--model", str(tiny_llama_dir)])
    assert r.exit_code == 1 and "No such file" in r.output


def test_inject_with_distill_then_ask(tiny_llama_dir, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("Ada Lovelace was born in London.")
    r = runner.invoke(app, ["inject", str(doc), "--save", str(tmp_path / "ad"), "--model", str(tiny_llama_dir),
                            "--injector", "distill", "--query", "Where was Ada Lovelace born?"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ad" / "adapter_model.safetensors").is_file()
    r = runner.invoke(app, ["ask", "Where was Ada Lovelace born?", "--model", str(tiny_llama_dir),
                            "--adapter", str(tmp_path / "ad")])
    assert r.exit_code == 0, r.output


def test_inject_without_hypernetwork_is_one_clear_line(tiny_llama_dir, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("Ada Lovelace was born in London.")
    r = runner.invoke(app, ["inject", str(doc), "--save", str(tmp_path / "ad"), "--model", str(tiny_llama_dir)])
    assert r.exit_code == 1 and "no hypernetwork" in r.output


def test_read_dtype_is_checked_and_refused_for_distill(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("Ada Lovelace was born in London.")
    r = runner.invoke(app, ["inject", str(doc), "--save", str(tmp_path / "ad"), "--read-dtype", "fp8"])
    assert r.exit_code == 1 and "unknown reading precision 'fp8'" in r.output
    r = runner.invoke(app, ["inject", str(doc), "--save", str(tmp_path / "ad"), "--injector", "distill",
                            "--read-dtype", "bfloat16"])
    assert r.exit_code == 1 and "the distill injector does not read that way" in r.output
    r = runner.invoke(app, ["inject", str(doc), "--save", str(tmp_path / "ad"), "--read-dtype", "bfloat16"])
    assert r.exit_code == 0, r.output


def test_bench_qa_measures_a_candidate_hypernetwork(tiny_llama_dir, tmp_path):
    import json

    from reverie.base.model import BaseModel
    from reverie.hypernet.model import HyperNetwork
    from reverie.hypernet.store import build_config, save_hypernet

    bm = BaseModel.load(tiny_llama_dir)
    save_hypernet(HyperNetwork(build_config(bm, 2, ("mlp.down_proj",), latent_dim=16, n_blocks=1)), tmp_path / "cand", {})
    r = runner.invoke(app, ["bench", "qa", "--model", str(tiny_llama_dir), "--hypernet", str(tmp_path / "cand"),
                            "--n-people", "2", "--n-cd", "0", "--json", "--results", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["hypernet"] == str(tmp_path / "cand") and out["locality"] == 1.0  # a fresh hypernetwork changes nothing
    r = runner.invoke(app, ["bench", "qa", "--model", str(tiny_llama_dir), "--hypernet", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no hypernetwork" in r.output and "Traceback" not in r.output
