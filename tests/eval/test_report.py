"""`reverie report`: one self-contained page from every benchmark JSON (issue 9).

String checks catch a missing heading or command; they cannot tell whether a figure would
show. So the page is also opened in headless Chromium: an inline script in the report
records how many <img> decoded (naturalWidth > 0), read back from `--dump-dom`, and a
screenshot must have real content. Without /usr/bin/chromium that test is skipped
(`apt-get install -y chromium`; `.ci/run` installs it).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reverie.cli import app
from reverie.eval.report import build

REPO = Path(__file__).resolve().parents[2]
REAL_RESULTS = REPO / "results"
CHROMIUM = Path("/usr/bin/chromium")


def tiny_png(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid w x h PNG of one colour, without an image library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))  # filter byte 0 per row
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def synthetic_results(d: Path) -> dict[str, dict]:
    """Known and future benchmarks in the shapes the real ones have, plus a corrupt file.
    Returns name -> expected {command, figures}."""
    d.mkdir(parents=True, exist_ok=True)
    qa = {"seed": 0, "command": "reverie bench qa --json --seed 0 --n-people 2", "model": "m",
          "acc_inject": 0.72, "acc_full": 1.0, "n_acc_inject": 12,
          "acc_inject_per_attribute": {"birth_city": 0.9, "employer": 0.5}}
    seq = {"seed": 1, "command": "reverie bench sequential --T 10 --seed 1", "T": 10,
           "strategies": {s: {"curve": {"1": {"retention": 0.8, "locality": 0.99},
                                        "10": {"retention": 0.4, "locality": 0.8}}, "wall_s": 1.0}
                          for s in ("add", "bank")},
           "summary": {"add.retention_10": 0.4, "retention_10": 0.4, "best_strategy": "bank"}}
    stream = {"seed": 2, "command": "reverie bench stream --days 3 --seed 2", "acc_inject": 0.7,
              "replay": {"daily_acc": [None, 1.0, 0.5], "final_acc": 0.5,
                         "final_acc_per_attribute": {"major": 0.5}},
              "no_replay": {"daily_acc": [None, 0.5, 0.0], "final_acc": 0.0}}
    # Future benchmarks: unknown stems; HTML-special characters in the command line.
    policy = {"seed": 3, "command": 'reverie bench policy --note "<b>&amp</b>"', "acc_policy": 0.6,
              "acc_oracle": 0.9, "acc_recency": 0.4}
    smol = {"seed": 4, "command": "reverie bench qa --model smollm2 --seed 4", "acc_inject": 0.3}
    for name, r in [("bench_qa", qa), ("bench_sequential", seq), ("bench_stream", stream),
                    ("bench_policy", policy), ("bench_qa_smollm2", smol)]:
        (d / f"{name}.json").write_text(json.dumps(r, indent=2))
    (d / "bench_sequential.png").write_bytes(tiny_png(40, 30, (200, 30, 30)))
    (d / "bench_policy.png").write_bytes(tiny_png(30, 20, (30, 200, 30)))
    (d / "bench_policy_budget.png").write_bytes(tiny_png(20, 20, (30, 30, 200)))
    (d / "bench_qa_smollm2.png").write_bytes(tiny_png(20, 10, (90, 90, 90)))  # not bench_qa's
    (d / "bench_policy_broken.png").write_bytes(b"not a png")
    (d / "broken.json").write_text('{"seed": 0, "command": "reverie bench x"')  # truncated
    return {
        "bench_qa": {"command": qa["command"], "figures": []},
        "bench_sequential": {"command": seq["command"], "figures": ["bench_sequential.png"]},
        # wrote no PNG: the report draws daily_acc from the JSON
        "bench_stream": {"command": stream["command"], "figures": ["report_bench_stream.png"]},
        "bench_policy": {"command": policy["command"], "figures": ["bench_policy.png", "bench_policy_budget.png"]},
        "bench_qa_smollm2": {"command": smol["command"], "figures": ["bench_qa_smollm2.png"]},
    }


def check_report(html: str, names: list[str], commands: list[str], n_figures: int) -> None:
    import html as h

    for name in names:
        assert re.search(rf'<h2>[^<]*<code>{re.escape(name)}\.json</code></h2>', html), f"no heading for {name}"
    for c in commands:
        assert h.escape(c) in html, f"command missing: {c}"
    assert html.count('<img src="data:image/png;base64,') == n_figures
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched


def test_report_from_synthetic_results(tmp_path: Path) -> None:
    expected = synthetic_results(tmp_path / "results")
    r = build(tmp_path / "results", tmp_path / "out")
    html = Path(r["html"]).read_text(encoding="utf-8")
    check_report(html, list(expected), [e["command"] for e in expected.values()],
                 sum(len(e["figures"]) for e in expected.values()))
    assert "<b>&amp</b>" not in html and "&lt;b&gt;&amp;amp&lt;/b&gt;" in html  # escaped
    got = {b["name"]: b["figures"] for b in r["benchmarks"]}
    assert got == {k: e["figures"] for k, e in expected.items()}
    assert [b["name"] for b in r["benchmarks"]][:3] == ["bench_qa", "bench_sequential", "bench_stream"]
    # One warning each for the corrupt JSON and the file that is not a PNG, naming it.
    assert len(r["warnings"]) == 2 and any("broken.json" in w for w in r["warnings"])
    assert any("bench_policy_broken.png" in w for w in r["warnings"])
    assert all("\n" not in w for w in r["warnings"])
    # Tables by shape: per attribute, curves against T, stream modes side by side.
    assert "retention against T" in html and "Per attribute" in html and "Side by side" in html
    md = Path(r["markdown"]).read_text(encoding="utf-8")
    for name, e in expected.items():
        assert f"(`{name}.json`)" in md and e["command"] in md
    assert "(../results/bench_sequential.png)" in md and "(report_bench_stream.png)" in md
    assert (tmp_path / "out" / "report_bench_stream.png").read_bytes().startswith(b"\x89PNG")


def test_report_cli(tmp_path: Path) -> None:
    synthetic_results(tmp_path / "results")
    runner = CliRunner()
    res = runner.invoke(app, ["report", "--results", str(tmp_path / "results"), "--json"])
    assert res.exit_code == 0, res.output
    line = next(s for s in res.stdout.splitlines() if s.startswith("{"))
    r = json.loads(line)
    assert Path(r["html"]) == tmp_path / "results" / "report.html" and Path(r["markdown"]).is_file()
    assert len(r["benchmarks"]) == 5
    assert "warning:" in res.stderr and "broken.json" in res.stderr

    for folder, what in [(tmp_path / "nowhere", "no results folder"), (tmp_path / "empty", "no benchmark JSON")]:
        if folder.name == "empty":
            folder.mkdir()
        res = runner.invoke(app, ["report", "--results", str(folder)])
        assert res.exit_code == 1
        assert res.stderr.count("\n") == 1 and what in res.stderr, res.stderr


def _real_results() -> Path:
    if not any(REAL_RESULTS.glob("*.json")):
        pytest.skip(f"no benchmark results in {REAL_RESULTS} (run a benchmark first)")
    return REAL_RESULTS


def test_report_from_real_results(tmp_path: Path) -> None:
    results = _real_results()
    r = build(results, tmp_path)  # written into tmp_path: results/ is left as it is
    html = Path(r["html"]).read_text(encoding="utf-8")
    names = [b["name"] for b in r["benchmarks"]]
    readable = {p.stem for p in results.glob("*.json")} - {w.split(":")[0].rsplit("/", 1)[-1].removesuffix(".json")
                                                           for w in r["warnings"]}
    assert set(names) == readable
    check_report(html, names, [b["command"] for b in r["benchmarks"]],
                 sum(len(b["figures"]) for b in r["benchmarks"]))
    for png in results.glob("*.png"):  # every plot a benchmark wrote is in the page
        assert any(png.name in b["figures"] for b in r["benchmarks"]), png.name


def _chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install it with `apt-get install -y chromium` (Debian)")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh profile per run
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args,
           page.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_report_opens_in_chromium(source: str, tmp_path: Path) -> None:
    """Every <img> decodes in a real browser, and the page renders to a non-blank screenshot."""
    if source == "real":
        r = build(_real_results(), tmp_path / "out")
    else:
        synthetic_results(tmp_path / "results")
        r = build(tmp_path / "results", tmp_path / "out")
    n = sum(len(b["figures"]) for b in r["benchmarks"])
    page = Path(r["html"])

    dom = _chromium(page, tmp_path, "--dump-dom").stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    assert total and loaded, f"the report's onload script did not run: {body.group(0)}"
    assert int(total.group(1)) == n and int(loaded.group(1)) == n, body.group(0)

    shot = tmp_path / "shot.png"
    _chromium(page, tmp_path, "--hide-scrollbars", "--window-size=1100,1400", f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 20_000, shot.stat().st_size if shot.exists() else None
    from PIL import Image  # matplotlib's dependency

    with Image.open(shot) as im:
        assert im.size == (1100, 1400)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50, "the screenshot is nearly blank"
