"""Writing benchmark results: one JSON object plus a Markdown table per run."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from reverie.utils import atomic_write_text

DEFAULT_RESULTS = Path("results")


def stamp(result: dict[str, Any], seed: int, model: str, started: float) -> dict[str, Any]:
    """Add what every result must carry: seed, command line, model, wall time, machine."""
    return {
        "seed": seed,
        "command": "reverie " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("reverie") else " ".join(sys.argv),
        "model": model,
        **result,
        "wall_s": round(time.time() - started, 2),
        "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def markdown_table(result: dict[str, Any], title: str) -> str:
    rows = [f"# {title}", "", f"`{result.get('command', '')}` (seed {result.get('seed')})", "",
            "| metric | value |", "| --- | --- |"]
    for k, v in result.items():
        if k in {"command"}:
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items())
        rows.append(f"| {k} | {v} |")
    return "\n".join(rows) + "\n"


def write(name: str, result: dict[str, Any], out: Path | None = None, title: str | None = None) -> Path:
    """Write ``<out>/<name>.json`` and ``<out>/<name>.md``; returns the folder."""
    out = Path(out or DEFAULT_RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=2))
    atomic_write_text(out / f"{name}.md", markdown_table(result, title or name))
    return out
