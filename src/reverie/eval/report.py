"""One page for every benchmark: `reverie report`.

Each benchmark writes its own JSON, Markdown table and plots under the results folder
(`reverie.eval.results`); reading them meant opening a dozen files. This module gathers every
``*.json`` in that folder into ONE self-contained HTML page (plots embedded as base64 PNG, inline
CSS, nothing fetched from anywhere, so it can be mailed or attached to an issue) and a Markdown
twin that links the PNGs beside it.

Nothing here knows a benchmark's schema by name: tables are chosen by the *shape* of the JSON
(top-level scalars, ``*_per_attribute`` dicts, dicts of named groups such as merge strategies or
stream modes, ``curve`` dicts keyed by T), so benchmarks added later (long documents, the policy,
a real model) appear without changes here. Known stems only get a nicer title and a place in
the order.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reverie.errors import ReverieError
from reverie.eval.results import DEFAULT_RESULTS
from reverie.utils import atomic_write_text

# Titles and order of the benchmarks we know; any other JSON follows, alphabetically.
TITLES = {
    "eval_base": "Base model",
    "bench_qa": "QA after injection",
    "bench_sequential": "Sequential injections",
    "bench_stream": "Stream: reading by day, sleeping by night",
    "bench_long": "Long documents",
    "bench_policy": "Consolidation policy",
    "bench_qa_smollm2": "QA after injection: SmolLM2-135M-Instruct on held-out passages",
}
# Written by `results.stamp`: shown on the command/meta lines, not in the metric tables.
META_KEYS = ("command", "seed", "model", "wall_s", "machine", "date")
# Headline metrics are the design's metric names (docs/design.md, "Metrics"), with their suffixes
# (`retention_1000`, `needle_4x`, `acc_<baseline>`, `final_acc_replay`, ...).
HEADLINE_PREFIXES = (
    "acc", "relative_qa", "generalization", "retention", "plasticity", "locality", "competence",
    "delta_norm", "update_success", "stale_rate", "inject_ratio", "answer_ratio", "needle", "qa_",
    "final_", "best_", "rougeL", "em_", "relative_gain",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HTML_NAME, MD_NAME = "report.html", "report.md"

Scalar = str | int | float | bool | None


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    collapsed: bool = False  # a long table of every value: inside <details> in the HTML


@dataclass
class Figure:
    name: str  # file name (or a made-up one for a rendered plot)
    png: bytes
    path: Path | None = None  # None: rendered here from the JSON, written beside the report


@dataclass
class Bench:
    stem: str
    path: Path
    data: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES.get(self.stem, self.stem.replace("_", " "))

    @property
    def command(self) -> str:
        return str(self.data.get("command") or "(command not recorded)")


# ---- reading ---------------------------------------------------------------------------------
def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def fmt(v: Scalar) -> str:
    """Four significant digits for small floats, whole numbers for large ones: table cells."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def _order(stem: str) -> tuple[int, str]:
    known = list(TITLES)
    return (known.index(stem) if stem in known else len(known), stem)


def load(results: Path) -> tuple[list[Bench], list[str]]:
    """Every readable benchmark JSON in ``results`` with its PNGs, and one warning per file
    skipped. Raises ReverieError when the folder is missing or holds no readable JSON."""
    results = Path(results)
    if not results.is_dir():
        raise ReverieError(f"no results folder at {results} (run a benchmark first, e.g. `reverie bench qa --json`)")
    files = sorted(results.glob("*.json"))
    if not files:
        raise ReverieError(f"no benchmark JSON in {results} (run a benchmark first, e.g. `reverie bench qa --json`)")
    warnings: list[str] = []
    benches: dict[str, Bench] = {}
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            warnings.append(f"{f}: not readable as JSON ({type(e).__name__}: {e}); skipped")
            continue
        if not isinstance(data, dict):
            warnings.append(f"{f}: not a benchmark result (a JSON {type(data).__name__}, not an object); skipped")
            continue
        benches[f.stem] = Bench(f.stem, f, data)
    # A PNG belongs to the longest JSON stem it starts with, so bench_qa_smollm2.png goes to
    # bench_qa_smollm2, not bench_qa. Stems of skipped files count too: their plots are dropped
    # rather than shown under the wrong benchmark.
    stems = sorted({f.stem for f in files}, key=len, reverse=True)
    for png in sorted(results.glob("*.png")):
        owner = next((s for s in stems if png.stem.startswith(s)), None)
        if owner is None or owner not in benches:
            continue
        blob = png.read_bytes()
        if not blob.startswith(PNG_MAGIC):  # a truncated or mislabelled file would show broken
            warnings.append(f"{png}: not a PNG image; skipped")
            continue
        benches[owner].figures.append(Figure(png.name, blob, png))
    if not benches:
        raise ReverieError(f"no readable benchmark JSON in {results} ({len(files)} files skipped)")
    out = sorted(benches.values(), key=lambda b: _order(b.stem))
    for b in out:
        b.tables = tables(b.data)
        if not b.figures:
            fig = render_series(b)
            if fig is not None:
                b.figures.append(fig)
    return out, warnings


# ---- tables, by the shape of the JSON -------------------------------------------------------
def _headline(key: str) -> bool:
    return key.startswith(HEADLINE_PREFIXES) and not key.endswith("_per_attribute")


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Scalar]]:
    """Every scalar in ``d``, with dotted paths; lists are summarised by their length."""
    rows: list[tuple[str, Scalar]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _flatten(v, key + ".")
        elif isinstance(v, list):
            rows.append((key, f"list of {len(v)}"))
        elif _is_scalar(v):
            rows.append((key, v))
    return rows


def _groups(v: Any) -> dict[str, dict[str, Any]] | None:
    """A dict of named groups (strategies, stream modes, policies): every value is a dict."""
    if isinstance(v, dict) and v and all(isinstance(g, dict) for g in v.values()):
        return v
    return None


def _curve_tables(name: str, groups: dict[str, dict[str, Any]]) -> list[Table]:
    """Groups carrying a ``curve`` keyed by T (bench sequential): per headline metric, one row
    per group and one column per T."""
    curves = {g: d["curve"] for g, d in groups.items() if _groups(d.get("curve"))}
    if not curves:
        return []
    ts = sorted({t for c in curves.values() for t in c}, key=lambda t: (float(t) if _num(t) else 0.0, t))
    metrics: list[str] = []
    for c in curves.values():
        for point in c.values():
            metrics += [m for m in point if m not in metrics and _headline(m) and _is_scalar(point[m])]
    out = []
    for m in metrics:
        rows = [[g] + [fmt(c.get(t, {}).get(m)) for t in ts] for g, c in curves.items()]
        out.append(Table(f"{m} against T ({name})", [name] + [f"T={t}" for t in ts], rows))
    return out


def _num(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def tables(data: dict[str, Any]) -> list[Table]:
    """The tables of one benchmark, headline first, then every value (collapsed)."""
    top = {k: v for k, v in data.items() if k not in META_KEYS}
    # A flat `summary` dict (bench sequential) holds the run's headline numbers: lift its
    # undotted keys to the top level; its dotted ones repeat the curve tables.
    summary = top.get("summary")
    if isinstance(summary, dict):
        top |= {k: v for k, v in summary.items() if "." not in k and _is_scalar(v) and k not in top}
    scalars = {k: v for k, v in top.items() if _is_scalar(v)}
    head = {k: v for k, v in scalars.items() if _headline(k)} or scalars
    out = []
    if head:
        out.append(Table("Headline metrics", ["metric", "value"], [[k, fmt(v)] for k, v in head.items()]))
    rest = {k: v for k, v in scalars.items() if k not in head}
    if rest:
        out.append(Table("Settings and counts", ["key", "value"], [[k, fmt(v)] for k, v in rest.items()]))

    # Named groups (merge strategies under `strategies`), and top-level dicts that sit side by
    # side (stream modes `replay`, `no_replay`): rows are metrics when there are few columns,
    # else one row per group.
    sets = [(k, g) for k, v in top.items() if k != "summary" and (g := _groups(v)) is not None]
    parts = {k: v for k, v in top.items() if isinstance(v, dict) and k != "summary"
             and not k.endswith("_per_attribute") and _groups(v) is None}
    if parts:
        sets.insert(0, ("part", parts))
    for name, groups in sets:
        keys: list[str] = []
        for g in groups.values():
            keys += [k for k, x in g.items() if _is_scalar(x) and k not in keys]
        title = "Side by side" if name == "part" else f"By {name}"
        if keys and len(groups) <= 4:
            rows = [[k] + [fmt(g.get(k)) for g in groups.values()] for k in keys]
            out.append(Table(title, ["metric", *groups], rows))
        elif keys:
            rows = [[gn] + [fmt(g.get(k)) for k in keys] for gn, g in groups.items()]
            out.append(Table(title, [name, *keys], rows))
        out += _curve_tables(name, groups)

    # Every `*_per_attribute` dict, at the top or one group down, as one column each.
    per: dict[str, dict[str, Any]] = {}
    for k, v in top.items():
        if k.endswith("_per_attribute") and isinstance(v, dict):
            per[k.removesuffix("_per_attribute")] = v
        for gn, g in (_groups(v) or {}).items():
            for gk, gv in g.items():
                if gk.endswith("_per_attribute") and isinstance(gv, dict):
                    per[f"{k}.{gn}.{gk.removesuffix('_per_attribute')}"] = gv
        if k in parts:
            for gk, gv in v.items():
                if gk.endswith("_per_attribute") and isinstance(gv, dict):
                    per[f"{k}.{gk.removesuffix('_per_attribute')}"] = gv
    if per:
        attrs: list[str] = []
        for d in per.values():
            attrs += [a for a in d if a not in attrs]
        rows = [[a] + [fmt(d.get(a)) if _is_scalar(d.get(a)) else "" for d in per.values()] for a in attrs]
        out.append(Table("Per attribute", ["attribute", *per], rows))

    everything = _flatten({k: v for k, v in data.items() if k != "command"})
    out.append(Table("Every value in the JSON", ["key", "value"], [[k, fmt(v)] for k, v in everything], collapsed=True))
    return out


# ---- a plot for a benchmark that wrote none --------------------------------------------------
def _series(d: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, list[float | None]]]:
    """Numeric lists (daily accuracy, loss curves) at most three dicts deep."""
    found: list[tuple[str, list[float | None]]] = []
    for k, v in d.items():
        if isinstance(v, list) and len(v) >= 2 and any(isinstance(x, int | float) for x in v) and all(
            x is None or (isinstance(x, int | float) and not isinstance(x, bool)) for x in v
        ):
            found.append((prefix + k, v))
        elif isinstance(v, dict) and depth < 3:
            found += _series(v, f"{prefix}{k}.", depth + 1)
    return found


def render_series(b: Bench) -> Figure | None:
    """A line plot of the benchmark's numeric lists, or None when it has none."""
    series = _series(b.data)[:12]  # more lines than this is not a readable plot
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is built on servers and in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ys in series:
        pts = [(i + 1, y) for i, y in enumerate(ys) if y is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
    ax.set_xlabel("position in the list (1 = first)")
    ax.legend(fontsize=8)
    ax.set_title(f"{b.stem} (seed {b.data.get('seed')}), drawn from its JSON")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return Figure(f"report_{b.stem}.png", buf.getvalue())


# ---- HTML -----------------------------------------------------------------------------------
CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-top: 1px solid #ccc; padding-top: 1em; margin-top: 2em; }
code, pre { font: 13px ui-monospace, monospace; background: #f4f4f4; }
pre { padding: .6em; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: .5em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
td { font-variant-numeric: tabular-nums; } th { background: #f0f0f0; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
.meta { color: #555; font-size: 13px; } nav li { margin: 0; }
"""
# The page needs no script to be read. This one only records, once every image has loaded,
# how many decoded (naturalWidth > 0): the headless-browser test reads it from the DOM.
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesTotal = String(imgs.length);
  document.body.dataset.imagesLoaded = String(ok);
});
"""


def _html_table(t: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.header)
    body = "\n".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in t.rows)
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    if t.collapsed:
        return f"<details><summary>{e(t.title)} ({len(t.rows)} rows)</summary>\n{table}\n</details>"
    return f"<h3>{e(t.title)}</h3>\n{table}"


def render_html(benches: list[Bench], results: Path) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>reverie benchmark report</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        "<h1>reverie benchmark report</h1>",
        f'<p class="meta">{len(benches)} benchmarks from <code>{e(str(results))}</code>, '
        f"built {e(time.strftime('%Y-%m-%d %H:%M:%S'))} by <code>reverie report</code>.</p>",
        "<nav><ul>" + "".join(f'<li><a href="#{e(b.stem)}">{e(b.title)}</a> <code>{e(b.path.name)}</code></li>'
                              for b in benches) + "</ul></nav>",
    ]
    for b in benches:
        d = b.data
        meta = [f"seed {fmt(d.get('seed'))}"] + [f"{k} {fmt(d[k])}" for k in ("model", "wall_s", "machine", "date")
                                                 if k in d and _is_scalar(d[k])]
        parts += [
            f'<section id="{e(b.stem)}">',
            f"<h2>{e(b.title)} <code>{e(b.path.name)}</code></h2>",
            f"<pre>{e(b.command)}</pre>",
            f'<p class="meta">{e(" · ".join(meta))}</p>',
        ]
        for f in b.figures:
            src = "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")
            cap = f.name if f.path is not None else f"{f.name} (drawn from the JSON: the benchmark wrote no plot)"
            parts.append(f'<figure><img src="{src}" alt="{e(f.name)}"><figcaption class="meta">{e(cap)}'
                         "</figcaption></figure>")
        parts += [_html_table(t) for t in b.tables]
        parts.append("</section>")
    parts += [f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


# ---- Markdown -------------------------------------------------------------------------------
def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(benches: list[Bench], results: Path, out: Path) -> str:
    """The same tables (not the collapsed one: the per-benchmark .md files have every value),
    with the PNGs linked relative to the Markdown file."""
    lines = ["# reverie benchmark report", "", f"{len(benches)} benchmarks from `{results}`; the same "
             f"with embedded plots: [{HTML_NAME}]({HTML_NAME}).", ""]
    for b in benches:
        lines += [f"## {b.title} (`{b.path.name}`)", "", "```", b.command, "```", "",
                  f"seed {fmt(b.data.get('seed'))}", ""]
        for f in b.figures:
            target = f.path if f.path is not None else out / f.name
            lines += [f"![{f.name}]({Path(os.path.relpath(target, out)).as_posix()})", ""]
        for t in b.tables:
            if t.collapsed:
                continue
            lines += [f"### {t.title}", "", "| " + " | ".join(map(_md_cell, t.header)) + " |",
                      "|" + " --- |" * len(t.header)]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in t.rows]
            lines.append("")
    return "\n".join(lines)


# ---- entry point ----------------------------------------------------------------------------
def build(results: Path | None = None, out: Path | None = None) -> dict[str, Any]:
    """Write ``report.html`` and ``report.md`` (and plots drawn from JSON) into ``out`` (default:
    the results folder). Returns what was written and included, and the warnings."""
    results = Path(results or DEFAULT_RESULTS)
    benches, warnings = load(results)
    out = Path(out or results)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for b in benches:
        for f in b.figures:
            if f.path is None:  # the Markdown links plots, so a drawn one needs a file
                (out / f.name).write_bytes(f.png)
                written.append(str(out / f.name))
    atomic_write_text(out / HTML_NAME, render_html(benches, results))
    atomic_write_text(out / MD_NAME, render_markdown(benches, results, out))
    return {
        "html": str(out / HTML_NAME),
        "markdown": str(out / MD_NAME),
        "figures_written": written,
        "benchmarks": [{"name": b.stem, "file": str(b.path), "command": b.command,
                        "figures": [f.name for f in b.figures]} for b in benches],
        "warnings": warnings,
    }
