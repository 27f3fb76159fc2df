"""`reverie bench learn`: its figures on the embedded model (fast; SmolLM2's run is the
benchmark itself) and its one-line errors."""

from __future__ import annotations

from typer.testing import CliRunner

from reverie.cli import app
from reverie.eval import bench_learn as bl


def test_an_unknown_set_is_one_line_and_exit_1() -> None:
    r = CliRunner().invoke(app, ["bench", "learn", "--sets", "bios,poems", "--model", "world"])
    assert r.exit_code == 1
    assert "unknown dev set poems" in r.output and len(r.output.strip().splitlines()) == 1


def test_the_world_model_gets_every_figure(tmp_path) -> None:
    r = bl.run(None, bl.LearnBench(sets=("bios", "notes"), limit=1, updates=True))
    for s in ("bios", "notes"):
        for k in ("acc_none", "acc_full", "acc_rag", "acc_sleep", "acc_single", "relative_sleep", "routed_right"):
            assert f"{k}_{s}" in r
        assert 0.0 <= r[f"acc_full_{s}"] <= 1.0
    assert r["n_items"] == {"bios": 1, "notes": 1}
    assert 0.0 <= r["locality"] <= 1.0 and r["n_locality"] > 0
    assert r["update_success"] is not None and r["stale_rate"] is not None
    assert r["sleep_s_per_item"] > 0 and r["answer_ratio"] > 0
    assert "| bios |" in bl.markdown(r)
