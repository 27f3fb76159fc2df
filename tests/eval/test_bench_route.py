"""`reverie bench route`: routing only, on the dev sets that need no download."""

from __future__ import annotations

from typer.testing import CliRunner

from reverie.cli import app
from reverie.eval import bench_route as br


def test_every_router_gets_every_figure_and_the_text_router_abstains() -> None:
    r = br.run(br.RouteBench(sets=("bios", "notes")))
    for name in br.ROUTES[:-1]:  # hidden: only given a model
        for s in ("bios", "notes"):
            assert 0.0 <= r[f"right_{s}_{name}"] <= 1.0 and 0.0 <= r[f"abstain_{s}_{name}"] <= 1.0
    assert r["abstain_bios_bm25"] == 0.0  # always routes somewhere
    assert r["abstain_bios_text"] == 1.0 and r["right_bios_text"] > r["right_bios_key"]
    assert "| text+bm25 |" in br.markdown(r)


def test_an_unknown_set_is_one_line_and_exit_1() -> None:
    r = CliRunner().invoke(app, ["bench", "route", "--sets", "poems"])
    assert r.exit_code == 1 and "unknown dev set poems" in r.output
