"""Hostile input through the CLI on the embedded model: each gets one clear line and a
non-zero exit, or a correct result, and the memory on disk stays intact. (Other rows of
the README's table are tested beside the code they exercise; the table names them.)"""

import json

import pytest
from typer.testing import CliRunner

from reverie.cli import app
from reverie.memory import Memory
from reverie.world import World

runner = CliRunner()


def _one_line_error(r, *words: str) -> None:
    assert r.exit_code != 0
    lines = [x for x in r.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture()
def mem(tmp_path):
    """A memory holding one buffered observation."""
    m = tmp_path / "mem"
    p = World().held_out[0]
    f = tmp_path / "bio.txt"
    f.write_text(World().biography(p, __import__("random").Random(0)))
    assert runner.invoke(app, ["read", str(f), "--memory", str(m)]).exit_code == 0
    return m


def _state(m) -> tuple[str, list[str]]:
    return (m / "memory.json").read_text(), sorted(p.name for p in (m / "buffer").iterdir())


@pytest.mark.parametrize("text", [b"", b"   \n\t "])
def test_empty_text(mem, tmp_path, text):
    before = _state(mem)
    f = tmp_path / "empty.txt"
    f.write_bytes(text)
    _one_line_error(runner.invoke(app, ["read", str(f), "--memory", str(mem)]), "empty")
    assert _state(mem) == before


def test_huge_text(mem, tmp_path):
    before = _state(mem)
    f = tmp_path / "huge.txt"
    f.write_bytes(b"word " * 4_000_000)  # 20 MB
    _one_line_error(runner.invoke(app, ["read", str(f), "--memory", str(mem)]), "20.0 MB", "limit")
    assert _state(mem) == before


def test_non_utf8_and_control_characters_are_read(mem, tmp_path):
    f = tmp_path / "odd.txt"
    f.write_bytes(b"Ada \xff\xfe Lovelace works for \x00Acme\x07 Corp.\x1b[31m red")
    r = runner.invoke(app, ["read", str(f), "--memory", str(mem), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["buffered"] == 2
    r = runner.invoke(app, ["sleep", "--memory", str(mem), "--no-replay", "--no-guard", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout.strip().splitlines()[-1])["consolidated"] == 2


def test_ten_thousand_token_question(mem):
    _one_line_error(runner.invoke(app, ["ask", "Who " * 10_000 + "does Ada work for?", "--memory", str(mem)]),
                    "tokens does not fit", "256-token window")


def test_corrupt_memory_state(mem):
    (mem / "memory.json").write_text("{ not json")
    _one_line_error(runner.invoke(app, ["memories", "list", "--memory", str(mem)]), "corrupt")


def test_truncated_memory_total(mem):
    st = json.loads((mem / "memory.json").read_text())
    total = mem / st["total"]
    total.write_bytes(total.read_bytes()[:100])
    _one_line_error(runner.invoke(app, ["memories", "list", "--memory", str(mem)]), str(mem))
    assert total.stat().st_size == 100  # nothing was "repaired" behind the user's back
    r = runner.invoke(app, ["memories", "repair", "--memory", str(mem)])  # asked for: rebuilt from the items
    assert r.exit_code == 0 and "rebuilt the total from" in " ".join(r.output.split()), r.output
    assert runner.invoke(app, ["memories", "list", "--memory", str(mem)]).exit_code == 0
    r = runner.invoke(app, ["memories", "repair", "--memory", str(mem)])
    assert r.exit_code == 0 and "nothing to repair" in " ".join(r.output.split())


def test_corrupt_buffer_entry(mem):
    entry = next((mem / "buffer").glob("*.json"))
    entry.write_text("{ half")
    _one_line_error(runner.invoke(app, ["sleep", "--memory", str(mem), "--no-guard"]), "corrupt buffer entry")
    assert entry.read_text() == "{ half"


def test_second_writer(mem, tmp_path):
    from reverie.base.model import BaseModel
    from reverie.hypernet.model import fingerprint
    from reverie.memory import memory_targets

    bm = BaseModel.load()
    holder = Memory(mem, fingerprint(bm.model), memory_targets(bm.model, bm.n_layers, ["mlp.down_proj"]))
    try:
        before = _state(mem)
        f = tmp_path / "x.txt"
        f.write_text("Ada Lovelace works for Acme.")
        _one_line_error(runner.invoke(app, ["read", str(f), "--memory", str(mem)]), "another process")
        _one_line_error(runner.invoke(app, ["sleep", "--memory", str(mem)]), "another process")
        assert _state(mem) == before
    finally:
        holder.close()


def test_memory_of_another_model(mem, tiny_llama_dir):
    _one_line_error(runner.invoke(app, ["memories", "list", "--memory", str(mem), "--model", str(tiny_llama_dir)]),
                    "another base model")


def test_corrupt_bank_item(tmp_path):
    m, f = tmp_path / "bank", tmp_path / "bio.txt"
    p = World().held_out[1]
    f.write_text(World().biography(p, __import__("random").Random(0)))
    r = runner.invoke(app, ["consolidate", str(f), "--memory", str(m), "--strategy", "bank", "--no-guard"])
    assert r.exit_code == 0, r.output
    [item] = [x for x in (m / "items").glob("*.safetensors") if x.stem != "bias"]
    item.write_bytes(item.read_bytes()[:100])  # truncated on disk
    before = (m / "memory.json").read_text()
    _one_line_error(runner.invoke(app, ["ask", f"Where was {p.name} born?", "--memory", str(m)]), "corrupt memory item", item.stem)
    assert (m / "memory.json").read_text() == before
    # A question that routes to no item never reads it.
    assert runner.invoke(app, ["ask", "Where was Nobody Atall born?", "--memory", str(m)]).exit_code == 0
