"""The memory commands end to end on the embedded model and hypernetwork (slow)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from reverie.base.model import DEFAULT_MODEL_DIR
from reverie.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture()
def bios(tmp_path):
    from reverie.base.qa import documents
    from reverie.world import World

    w = World()
    docs = documents(w, w.held_out[:2], 5)
    paths = []
    for i, d in enumerate(docs.values()):
        p = tmp_path / f"bio{i}.txt"
        p.write_text(d)
        paths.append(str(p))
    return paths


def test_consolidate_list_show_forget_export(tmp_path, bios):
    if not (DEFAULT_MODEL_DIR / "hypernet").exists():
        pytest.skip("no hypernetwork shipped")
    mem = str(tmp_path / "mem")
    r = runner.invoke(app, ["consolidate", *bios, "--memory", mem, "--json", "--no-guard"])
    assert r.exit_code == 0, r.output
    ids = [row["id"] for row in json.loads(r.stdout.strip().splitlines()[-1])]
    assert all(ids)
    r = runner.invoke(app, ["memories", "list", "--memory", mem, "--json"])
    listed = json.loads(r.stdout)
    assert [i["id"] for i in listed["items"]] == ids and listed["items"][0]["excerpt"]
    r = runner.invoke(app, ["memories", "show", ids[0], "--memory", mem, "--json"])
    shown = json.loads(r.stdout)
    assert shown["layers"] and shown["delta_norm"] > 0 and shown["live"]
    assert runner.invoke(app, ["memories", "snapshot", "two", "--memory", mem]).exit_code == 0
    assert runner.invoke(app, ["memories", "forget", ids[0], "--memory", mem]).exit_code == 0
    assert len(json.loads(runner.invoke(app, ["memories", "list", "--memory", mem, "--json"]).stdout)["items"]) == 1
    assert runner.invoke(app, ["memories", "rollback", "two", "--memory", mem]).exit_code == 0
    assert len(json.loads(runner.invoke(app, ["memories", "list", "--memory", mem, "--json"]).stdout)["items"]) == 2

    # the memory as a peft adapter gives the same weights as the memory merged in
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert runner.invoke(app, ["export", "peft", str(tmp_path / "ad"), "--memory", mem]).exit_code == 0
    assert runner.invoke(app, ["export", "merged", str(tmp_path / "merged"), "--memory", mem]).exit_code == 0
    base = AutoModelForCausalLM.from_pretrained(str(DEFAULT_MODEL_DIR), dtype=torch.float32)
    peft_merged = PeftModel.from_pretrained(base, str(tmp_path / "ad")).merge_and_unload()
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32)
    for (n, a), (_, b) in zip(peft_merged.state_dict().items(), merged.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-3), n


def test_memory_errors_are_one_line(tmp_path):
    r = runner.invoke(app, ["memories", "list", "--memory", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no memory at" in r.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "memory.json").write_text("{not json")
    r = runner.invoke(app, ["memories", "list", "--memory", str(tmp_path / "bad")])
    assert r.exit_code == 1 and "corrupt memory state" in r.output


def test_read_ask_sleep(tmp_path, bios):
    from reverie.world import World

    mem = str(tmp_path / "mem")
    p = World().held_out[0]
    r = runner.invoke(app, ["read", bios[0], "--memory", mem, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["buffered"] == 1
    r = runner.invoke(app, ["ask", f"In which city does {p.name} work?", "--memory", mem])
    assert r.exit_code == 0 and r.stdout.strip() == p.attrs["employer_city"]  # from the working context
    r = runner.invoke(app, ["sleep", "--memory", mem, "--json", "--no-guard"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["consolidated"] == 1 and rep["replay_rows"] > 0
    r = runner.invoke(app, ["memories", "show", rep["items"][0], "--memory", mem, "--json"])
    shown = json.loads(r.stdout)
    assert r.exit_code == 0 and len(shown["probe"]) == 6  # one question per attribute stated
    assert {row["key"].split("|")[0] for row in shown["probe"]} == {p.name}
    assert sum(row["answer_now"] == p.attrs[row["key"].split("|")[1]] for row in shown["probe"]) >= 3
    r = runner.invoke(app, ["read", str(tmp_path / "missing.txt"), "--memory", mem])
    assert r.exit_code != 0 and "missing.txt" in r.output
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    r = runner.invoke(app, ["read", str(empty), "--memory", mem])
    assert r.exit_code != 0 and "empty" in r.output


def test_read_sleep_ask_show_on_a_bank_memory(tmp_path, bios):
    """`reverie read --strategy bank`: sleep repairs instead of replaying; ask and show route."""
    from reverie.world import World

    mem = str(tmp_path / "bank")
    p = World().held_out[0]
    assert runner.invoke(app, ["read", bios[0], "--memory", mem, "--strategy", "bank"]).exit_code == 0
    r = runner.invoke(app, ["sleep", "--memory", mem, "--json", "--no-guard"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["consolidated"] == 1 and rep["replay_rows"] == 0 and rep["repaired"] in (0, 1)
    r = runner.invoke(app, ["ask", f"Where was {p.name} born?", "--memory", mem])
    assert r.exit_code == 0 and r.stdout.strip() == p.attrs["birth_city"]
    shown = json.loads(runner.invoke(app, ["memories", "show", rep["items"][0], "--memory", mem, "--json"]).stdout)
    assert shown["strategy"] == "bank" and shown["key"]
    assert sum(row["answer_now"] == p.attrs[row["key"].split("|")[1]] for row in shown["probe"]) >= 5


def test_a_bank_exports_one_adapter_per_item_and_refuses_to_merge(tmp_path, bios):
    mem = str(tmp_path / "bank")
    r = runner.invoke(app, ["consolidate", *bios, "--memory", mem, "--strategy", "bank", "--json", "--no-guard"])
    ids = [row["id"] for row in json.loads(r.stdout)]
    assert runner.invoke(app, ["export", "peft", str(tmp_path / "ad"), "--memory", mem]).exit_code == 0
    routes = json.loads((tmp_path / "ad" / "routes.json").read_text())
    assert set(routes["items"]) == set(ids) and all(routes["items"].values())
    for i in ids:
        assert (tmp_path / "ad" / "items" / i / "adapter_model.safetensors").is_file()
    assert (tmp_path / "ad" / "shared" / "adapter_config.json").is_file()
    r = runner.invoke(app, ["export", "merged", str(tmp_path / "merged"), "--memory", mem])
    assert r.exit_code == 1 and "is a bank" in r.output and not (tmp_path / "merged").exists()
