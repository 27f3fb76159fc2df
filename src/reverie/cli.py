"""The `reverie` command line (Typer). Errors print one line to stderr and exit non-zero."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from reverie.errors import ReverieError

app = typer.Typer(help="reverie: a language model that learns from what it reads.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
world_app = typer.Typer(help="The synthetic knowledge world.", no_args_is_help=True)
train_app = typer.Typer(help="Training recipes (resumable: rerun the same command).", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations of the models.", no_args_is_help=True)
app.add_typer(world_app, name="world")
app.add_typer(train_app, name="train")
bench_app = typer.Typer(help="Benchmarks: one JSON object on stdout with --json; files under --results.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")

err = Console(stderr=True)
out = Console()

ModelOpt = Annotated[Path | None, typer.Option("--model", help="Local model directory (default: the embedded model).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for sampling people, documents and questions.")]


def friendly(fn):
    """Turn a ReverieError (or a bad file) into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except ReverieError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False)
            raise typer.Exit(1) from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            err.print(f"[red]error:[/red] {e.strerror}: {e.filename}", highlight=False)
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


# ---- world ------------------------------------------------------------------------------
@world_app.command("sample")
def world_sample(n: Annotated[int, typer.Option(help="People to show.")] = 2,
                 seed: Annotated[int, typer.Option(help="World seed.")] = 0,
                 population: Annotated[str, typer.Option(help="base | held_out | skill")] = "held_out") -> None:
    """Print a few people with a biography and questions (same seed, same bytes)."""
    import random

    from reverie.world import World, WorldConfig

    w = World(WorldConfig(seed=seed))
    if population == "skill":
        it = w.skill_people(seed)
        people = [next(it) for _ in range(n)]
    elif population in ("base", "held_out"):
        people = getattr(w, population)[:n]
    else:
        err.print(f"[red]error:[/red] unknown population {population!r} (base, held_out, skill)")
        raise typer.Exit(2)
    r = random.Random(seed)
    for p in people:
        out.print(f"[bold]{p.name}[/bold]  {json.dumps(p.attrs)}", highlight=False)
        out.print(w.biography(p, r), highlight=False)
        for qa in w.questions(p)[::4] + w.questions(p, heldout=True)[:1]:
            out.print(f"  Q: {qa.question}  A: {qa.answer}", highlight=False)
        out.print()


# ---- train ------------------------------------------------------------------------------
@train_app.command("base")
@friendly
def train_base(out_dir: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, log.")] = Path("runs/base"),
               seed: Annotated[int, typer.Option(help="World, data and init seed.")] = 0,
               steps: Annotated[int, typer.Option(help="Optimizer steps (4000 is about an hour on 2 cores).")] = 4000,
               export: Annotated[bool, typer.Option(help="Ship the result as the embedded default model.")] = False) -> None:
    """Train the embedded default base model on the world (resumable)."""
    from reverie.base.train import setup

    setup(out=str(out_dir), seed=seed, steps=steps, export=export)


@train_app.command("hypernet")
@friendly
def train_hypernet(out_dir: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, log.")] = Path("runs/hypernet"),
                   model: ModelOpt = None,
                   seed: Annotated[int, typer.Option(help="Data and init seed.")] = 0,
                   steps: Annotated[int, typer.Option(help="Optimizer steps (2400 is about 25 minutes on 2 cores).")] = 2400,
                   docs_per_step: Annotated[int, typer.Option(help="Documents per step (per process).")] = 8,
                   export: Annotated[bool, typer.Option(help="Ship the result beside the base model (its hypernet/ folder).")] = False) -> None:
    """Meta-train the hypernetwork (resumable). Multi-process: `torchrun --nproc_per_node N -m reverie.cli train hypernet`."""
    from reverie.hypernet.train import setup

    setup(out=str(out_dir), base=None if model is None else str(model), seed=seed, steps=steps,
          export=export, docs_per_step=docs_per_step)


# ---- eval -------------------------------------------------------------------------------
@eval_app.command("base")
@friendly
def eval_base(model: ModelOpt = None, as_json: JsonOpt = False, seed: SeedOpt = 0,
              n_held_out: Annotated[int, typer.Option(help="Held-out people (6 questions each).")] = 100,
              results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """acc_full, acc_none, closed-book accuracy and held-out-template accuracy of a base model."""
    from reverie.base.model import BaseModel
    from reverie.eval import results as res
    from reverie.eval.base_eval import evaluate

    t0 = time.time()
    bm = BaseModel.load(model)
    r = res.stamp(evaluate(bm, seed=seed, n_held_out=n_held_out), seed, bm.path, t0)
    res.write("eval_base", r, results, "Base model")
    emit(r, as_json, "Base model")


@bench_app.command("qa")
@friendly
def bench_qa(model: ModelOpt = None, as_json: JsonOpt = False, seed: SeedOpt = 0,
             n_people: Annotated[int, typer.Option(help="Held-out people (6 questions each).")] = 60,
             n_cd: Annotated[int, typer.Option(help="People for gradient distillation (slow).")] = 10,
             cd_steps: Annotated[int, typer.Option(help="AdamW steps per distilled document.")] = 300,
             results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """QA after injection vs no context, full context, BM25 retrieval and gradient distillation."""
    from reverie.eval import bench_qa
    from reverie.eval import results as res
    from reverie.learner import Learner

    t0 = time.time()
    learner = Learner.load(model)
    r = bench_qa.run(learner.bm, learner.injector, seed=seed, n_people=n_people, n_cd=n_cd, cd_steps=cd_steps)  # type: ignore[arg-type]
    r = res.stamp(r, seed, learner.bm.path, t0)
    res.write("bench_qa", r, results, "QA after injection")
    emit(r, as_json, "QA after injection")


@app.command()
@friendly
def inject(file: Annotated[str, typer.Argument(help="Text file to inject, or - for standard input.")],
           save: Annotated[Path, typer.Option(help="Folder to write the adapter to (peft format).")],
           model: ModelOpt = None,
           injector: Annotated[str, typer.Option(help="hyper (the hypernetwork) or distill (gradient context distillation).")] = "hyper",
           query: Annotated[list[str] | None, typer.Option(help="Probe question for distill (repeatable).")] = None) -> None:
    """Write a document into a LoRA adapter (peft format)."""
    from reverie.learner import Learner

    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    learner = Learner.load(model, injector=injector)
    ad = learner.injector.inject(data, query or None)
    ad.save(save, learner.bm.path)
    err.print(f"adapter rank {ad.rank}, {ad.nbytes} bytes, {ad.meta['inject_s'] * 1000:.1f} ms -> {save}")


@app.command()
@friendly
def ask(question: Annotated[str, typer.Argument(help="The question.")],
        adapter: Annotated[list[Path] | None, typer.Option(help="Adapter folder(s) to apply (repeatable).")] = None,
        context: Annotated[Path | None, typer.Option(help="A text file to put in context.")] = None,
        model: ModelOpt = None) -> None:
    """Answer a question greedily, optionally with adapters merged in and/or a document in context."""
    from reverie.base.model import BaseModel, decode_input
    from reverie.hypernet.adapter import Adapter
    from reverie.hypernet.lora import merge

    bm = BaseModel.load(model)
    for a in adapter or []:
        ad = Adapter.load(a)
        merge(bm.model, ad.factors, ad.scale)
    ctx = decode_input(context.read_bytes()) if context else None
    out.print(bm.answer(question, ctx), highlight=False)


# ---- demo -------------------------------------------------------------------------------
@app.command()
@friendly
def demo(model: ModelOpt = None, n: Annotated[int, typer.Option(help="People to show.")] = 2,
         seed: SeedOpt = 0) -> None:
    """Show the embedded model reading held-out biographies: right in context, lost without."""
    from reverie.demo import run

    run(model, n, seed, out)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # `python -m reverie.cli`, e.g. under torchrun
    app()
