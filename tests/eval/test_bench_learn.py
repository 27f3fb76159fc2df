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


def test_filler_paragraphs_spread_over_articles_and_skip_the_dev_sets() -> None:
    from reverie.eval.devsets import _raw, filler

    title = str(_raw("wiki")[0]["title"])
    used = {int(d["paragraph"]) for d in _raw("wiki") if d["title"] == title}
    long = " ".join(["word"] * 60)
    n = max(used) + 3
    articles = {title: "\n\n".join(f"{long} a{i}" for i in range(n)),
                "Zebra": "\n\n".join(["too short", f"{long} z1", f"{long} z2"])}
    got = filler(100, articles)
    assert {t.split()[-1] for t in got if t.split()[-1].startswith("a")} == {f"a{i}" for i in range(n) if i not in used}
    assert "too short" not in got and len(got) == n - len(used) + 2
    # paragraph by paragraph across articles: Zebra's first long paragraph before the other's last
    assert got.index(f"{long} z1") < got.index(f"{long} a{n - 1}")
    assert filler(1, articles) == got[:1]
