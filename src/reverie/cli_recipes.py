"""`reverie train …`, `reverie eval …` and `reverie bench …`: the recipes and benchmarks
(a second file so that cli.py stays the user's verbs; both build one Typer app)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from reverie.cli_common import JsonOpt, ModelOpt, ReadDtypeOpt, SeedOpt, emit, err, friendly
from reverie.errors import ReverieError

train_app = typer.Typer(help="Training recipes (resumable: rerun the same command).", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations of the models.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: one JSON object on stdout with --json; files under --results.", no_args_is_help=True)


# ---- train ------------------------------------------------------------------------------
@train_app.command("base")
@friendly
def train_base(out_dir: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, log.")] = Path("runs/base"),
               seed: Annotated[int, typer.Option(help="World, data and init seed.")] = 0,
               steps: Annotated[int, typer.Option(min=1, help="Optimizer steps (4000 is about an hour on 2 cores).")] = 4000,
               needle_from: Annotated[int | None, typer.Option(min=0, help="Start the needle stage (magic numbers read out of haystack text) at this step; extends a finished run when --steps goes past its end.")] = None,
               p_needle: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of needle episodes in the needle stage.")] = 0.15,
               lr_needle: Annotated[float, typer.Option(min=0.0, help="Peak learning rate of the needle stage.")] = 3e-4,
               p_unknown: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of closed-book segments in the needle stage that ask about people never read about, answered \"I don't know\".")] = 0.0,
               p_paraphrase: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of questions asked with a paraphrase template (other question forms; never a held-out one).")] = 0.0,
               p_which: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of questions asked as \"Which NOUN ...\" with varied nouns (never a held-out one).")] = 0.0,
               p_words: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of university questions asked with \"school\", a word the hypernetwork's training questions never use (never a held-out template).")] = 0.0,
               init: Annotated[str | None, typer.Option(help="Start a new run from this model folder (e.g. the shipped one) or base run folder, keeping its tokenizer; with --needle-from 0, a needle stage on its own.")] = None,
               device: Annotated[str, typer.Option(help="Torch device to train on (cpu, cuda).")] = "cpu",
               export: Annotated[bool, typer.Option(help="Ship the result as the embedded default model.")] = False,
               export_to: Annotated[Path | None, typer.Option(help="Write the result as a model folder here instead (a candidate for --model).")] = None) -> None:
    """Train the embedded default base model on the world (resumable)."""
    from reverie.base.train import setup

    setup(out=str(out_dir), seed=seed, steps=steps, export=export, needle_from=needle_from, p_needle=p_needle, lr_needle=lr_needle, p_unknown=p_unknown,
          p_paraphrase=p_paraphrase, p_which=p_which, p_words=p_words, init=init, device=device, export_to=None if export_to is None else str(export_to))


@train_app.command("hypernet")
@friendly
def train_hypernet(ctx: typer.Context,
                   out_dir: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, log.")] = Path("runs/hypernet"),
                   model: ModelOpt = None,
                   seed: Annotated[int, typer.Option(help="Data and init seed.")] = 0,
                   steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps (default: embedded model 4000, about 40 minutes on 2 cores; real models 2000).")] = None,
                   docs_per_step: Annotated[int | None, typer.Option(min=1, help="Documents per step, per process (default: embedded model 8; real models 16).")] = None,
                   lr: Annotated[float | None, typer.Option(min=0.0, help="Peak learning rate (default: embedded model 1e-3; real models 3e-4).")] = None,
                   group_sizes: Annotated[str, typer.Option(help="Comma-separated sizes of the groups whose adapters are summed (1 = single documents).")] = "1",
                   init: Annotated[str | None, typer.Option(help="Start a new stage from this run folder or hypernetwork folder.")] = None,
                   shared: Annotated[float, typer.Option(min=0.0, help="Weight of the penalty on what the documents' deltas share.")] = 0.0,
                   local: Annotated[float, typer.Option(min=0.0, help="Weight of the KL-to-base term on questions about people not injected (locality).")] = 1.0,
                   p_needle: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of single documents that are needle haystacks (a magic number to remember); needs a base trained with --needle-from.")] = 0.0,
                   p_paraphrase: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of document questions asked in other forms than the training templates (the base model's paraphrase and \"Which NOUN\" forms; never a held-out one).")] = 0.0,
                   local_own: Annotated[bool, typer.Option("--local-own", help="Locality questions continue with the base model's own greedy answer (e.g. \"I don't know\" about strangers) instead of the gold one.")] = False,
                   local_margin: Annotated[float, typer.Option(min=0.0, help="Weight of a hinge keeping the base model's greedy-token margin on locality questions (0 = off).")] = 0.0,
                   n_local: Annotated[int, typer.Option(min=1, help="Locality questions per group of summed documents (half about base people, half about strangers).")] = 4,
                   local_mine: Annotated[int, typer.Option(min=0, help="Mined locality: candidate questions about base people per group, scored under the group's adapter each step; the --mine-keep nearest to flipping join the locality rows (0 = off).")] = 0,
                   mine_keep: Annotated[int, typer.Option(min=1, help="Mined locality rows kept per group (with --local-mine).")] = 2,
                   mine_strangers: Annotated[bool, typer.Option("--mine-strangers", help="Half the mined candidates are fresh people the base model abstains about.")] = False,
                   local_bias: Annotated[float, typer.Option(min=0.0, help="Weight of the locality term on questions about others with the context-independent bias adapter alone (0 = off).")] = 0.0,
                   bias_fade: Annotated[int, typer.Option(min=0, help="Fade the context-independent bias adapter out over this many steps (zero from then on), so the documents' own components carry the switch to answering (0 = keep it).")] = 0,
                   rank: Annotated[int, typer.Option(min=1, help="LoRA rank emitted per document; above --init's rank it grows that hypernetwork (new components: fresh latents, 0.3 x the old scalers).")] = 8,
                   targets: Annotated[str, typer.Option(help="Comma-separated Linear modules inside each layer that the adapters write, e.g. mlp.down_proj,self_attn.o_proj (a new run; --init must have the same).")] = "mlp.down_proj",
                   device: Annotated[str, typer.Option(help="Torch device to train on (cpu, cuda).")] = "cpu",
                   max_seconds: Annotated[float | None, typer.Option(help="Fit the step count to this wall-clock budget (measured over the first 50 steps).")] = None,
                   eval_every: Annotated[int | None, typer.Option(min=1, help="Steps between monitoring evaluations (default 400; real models: 50, on held-out passages).")] = None,
                   pool: Annotated[int, typer.Option(min=1, help="Real models: training passages given teacher answers first.")] = 4000,
                   data: Annotated[Path | None, typer.Option(help="Real models: passages JSON-lines file instead of the fetched training split.")] = None,
                   teacher: Annotated[Path | None, typer.Option(help="Real models: teacher rows already generated (JSON lines, .gz too) instead of --pool new ones.")] = None,
                   focus: Annotated[float, typer.Option(min=0.0, help="Real models: extra weight on the answer tokens the passage decides (0 = plain KL).")] = 0.0,
                   eval_data: Annotated[Path | None, typer.Option(help="Real models: held-out passages (JSON lines) for the monitor instead of the fetched test split.")] = None,
                   keep_best: Annotated[bool, typer.Option("--keep-best", help="Real models: export the weights the held-out monitor scored best (lowest KL) instead of the last.")] = False,
                   export: Annotated[bool, typer.Option(help="Ship the result beside the base model (its hypernet/ folder).")] = False,
                   export_to: Annotated[Path | None, typer.Option(help="Real models: write the result into this hypernetwork folder instead (a candidate).")] = None) -> None:
    """Meta-train the hypernetwork (resumable). Multi-process: `torchrun --nproc_per_node N -m reverie.cli train hypernet`.

    With --model smollm2 it trains on real passages with the model's own answers as targets
    (the recipe in reverie/hypernet/train_real.py)."""
    from reverie.base.real import NAMED, shipped_hypernet
    from reverie.hypernet.train import setup

    names = tuple(t.strip() for t in targets.split(",") if t.strip())
    real = model is not None and str(model) in NAMED
    # Each recipe has options the other does not read: given to the wrong one, they would be
    # silently ignored, so they are refused instead. Click says which ones the user gave (by
    # name: typer ships its own copy of click's ParameterSource).
    world_only = ("group_sizes", "shared", "local", "p_needle", "p_paraphrase", "local_own", "local_margin", "n_local",
                  "local_mine", "mine_keep", "mine_strangers", "local_bias", "bias_fade")
    real_only = ("pool", "data", "teacher", "focus", "eval_data", "keep_best", "export_to")
    wrong = ["--" + n.replace("_", "-") for n in (world_only if real else real_only)
             if getattr(ctx.get_parameter_source(n), "name", "DEFAULT") != "DEFAULT"]
    if wrong:
        raise ReverieError(f"{', '.join(wrong)}: only for the {'embedded model' if real else 'real-model'} recipe "
                           f"(this run: {'--model ' + str(model) if real else 'the embedded world model'})")
    # Steps, batch and learning rate left unsaid take each recipe's own defaults.
    given: dict[str, Any] = {k: v for k, v in (("steps", steps), ("docs_per_step", docs_per_step), ("lr", lr))
                             if v is not None}
    if real:
        from reverie.hypernet import train_real

        out = str(out_dir) if out_dir != Path("runs/hypernet") else f"runs/hypernet_{model}"
        train_real.setup(out=out, model=str(model), seed=seed, pool=pool, device=device, **given,
                         max_seconds=max_seconds, data=None if data is None else str(data), init=init,
                         teacher=None if teacher is None else str(teacher), eval_every=eval_every,
                         eval_data=None if eval_data is None else str(eval_data), focus=focus, keep_best=keep_best,
                         rank=rank, targets=names,
                         export=str(export_to) if export_to else str(shipped_hypernet(str(model))) if export else None)
        return

    try:
        sizes = tuple(int(x) for x in group_sizes.split(","))
    except ValueError:
        raise ReverieError(f"--group-sizes {group_sizes!r}: expected integers separated by commas, e.g. 1,2,4,8") from None
    setup(out=str(out_dir), base=None if model is None else str(model), seed=seed, **given,
          export=export, group_sizes=sizes, init=init, shared=shared, local=local,
          device=device, max_seconds=max_seconds, eval_every=eval_every, p_needle=p_needle, local_own=local_own,
          p_paraphrase=p_paraphrase, local_margin=local_margin, n_local=n_local,
          local_mine=local_mine, mine_keep=mine_keep, mine_strangers=mine_strangers, rank=rank,
          local_bias=local_bias, bias_fade=bias_fade, targets=names)


@train_app.command("policy")
@friendly
def train_policy(out_dir: Annotated[Path, typer.Option("--out", help="Run folder: answer-table cache, checkpoints, log.")] = Path("runs/policy"),
                 seed: Annotated[int, typer.Option(help="PPO seed; also picks the training streams.")] = 0,
                 timesteps: Annotated[int, typer.Option(min=1, help="Nights of experience (PPO environment steps).")] = 60_000,
                 budget: Annotated[int, typer.Option(min=1, help="Consolidations per night for validation.")] = 3,
                 budgets: Annotated[str, typer.Option(help="Budgets drawn per training episode (comma-separated).")] = "1,2,3,4,5",
                 streams: Annotated[int, typer.Option(min=1, help="Training streams (answer tables built once each, ~7 s).")] = 64,
                 val_streams: Annotated[int, typer.Option(min=1, help="Validation streams (the best checkpoint is kept).")] = 16,
                 nights: Annotated[int, typer.Option(min=1, help="Nights per stream (episode length).")] = 8,
                 n_envs: Annotated[int, typer.Option(min=1, help="Environments per rollout.")] = 8,
                 lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate.")] = 3e-4,
                 cost: Annotated[float, typer.Option(min=0.0, help="Reward cost per consolidation.")] = 0.002,
                 eval_every: Annotated[int, typer.Option(min=1, help="Nights between validation runs and checkpoints.")] = 4096,
                 workers: Annotated[int, typer.Option(min=1, help="Processes building the answer tables.")] = 1,
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
              n_held_out: Annotated[int, typer.Option(min=1, help="Held-out people (6 questions each).")] = 100,
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
             n_people: Annotated[int, typer.Option(min=1, help="Held-out people (6 questions each).")] = 60,
             n_cd: Annotated[int, typer.Option(min=0, help="People for gradient distillation (slow).")] = 10,
             cd_steps: Annotated[int, typer.Option(min=1, help="AdamW steps per distilled document.")] = 300,
             held_out_from: Annotated[int, typer.Option(min=0, help="First held-out person (injected people, then as many strangers for locality); 0 = the benchmark's own.")] = 0,
             base_from: Annotated[int, typer.Option(min=0, help="First base-population person asked about for locality; 0 = the benchmark's own.")] = 0,
             hypernet: Annotated[Path | None, typer.Option(help="A hypernetwork folder to measure (e.g. a candidate from a training run's export) instead of the model's own.")] = None,
             read_dtype: ReadDtypeOpt = None,
             results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """QA after injection vs no context, full context, BM25 retrieval and gradient distillation.

    --held-out-from and --base-from measure on other people than the benchmark's own: its
    locality prompts pair the same people at every seed, so seeds alone are not independent.

    With --model smollm2: held-out SQuAD-derived passages, scored with ROUGE-L F1 and exact
    match (distillation on at most 5 passages)."""
    from reverie.base.real import NAMED
    from reverie.eval import bench_qa
    from reverie.eval import results as res
    from reverie.learner import Learner

    t0 = time.time()
    learner = Learner.load(model, hypernet=hypernet, injector="hyper", read_dtype=read_dtype)
    if model is not None and str(model) in NAMED:
        # A real model reads real passages: --n-people counts held-out passages (2 questions each).
        if held_out_from or base_from:
            raise ReverieError("--held-out-from and --base-from pick the world's people; they do not apply to --model " + str(model))
        from reverie.eval import bench_real

        name = f"bench_qa_{model}"
        r = bench_real.run(learner.bm, learner.injector, seed=seed, n_passages=n_people,  # type: ignore[arg-type]
                           n_cd=min(n_cd, 5), cd_steps=cd_steps,
                           partial=lambda o: res.write(f"{name}.partial", res.stamp(dict(o), seed, str(model), t0), results))
        r = res.stamp(r, seed, str(model), t0) | ({"hypernet": str(hypernet)} if hypernet else {})
        res.write(name, r, results, f"QA after injection: {model} on held-out passages")
        for suffix in (".json", ".md"):
            (results / f"{name}.partial{suffix}").unlink(missing_ok=True)
        emit(r, as_json, f"QA after injection ({model})")
        return
    r = bench_qa.run(learner.bm, learner.injector, seed=seed, n_people=n_people, n_cd=n_cd, cd_steps=cd_steps,  # type: ignore[arg-type]
                     held_out_from=held_out_from, base_from=base_from)
    r = res.stamp(r, seed, learner.bm.path, t0) | ({"hypernet": str(hypernet)} if hypernet else {})
    res.write("bench_qa", r, results, "QA after injection")
    emit(r, as_json, "QA after injection")


def _dev_sets(sets: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of dev sets, each one of ``known``."""
    names = tuple(x.strip() for x in sets.split(",") if x.strip())
    unknown = [x for x in names if x not in known]
    if unknown or not names:
        raise ReverieError(f"unknown dev set {', '.join(unknown) or '(none)'}: choose from {', '.join(known)}")
    return names


@bench_app.command("learn")
@friendly
def bench_learn(model: Annotated[str, typer.Option("--model", help="smollm2 (SmolLM2-135M-Instruct), a local model directory, or world (the embedded model).")] = "smollm2",
                as_json: JsonOpt = False, seed: SeedOpt = 0,
                sets: Annotated[str, typer.Option(help="Comma-separated dev sets: bios, wiki, notes.")] = "bios,wiki,notes",
                split: Annotated[str, typer.Option(help="Half to report: test (never tuned on) or dev.")] = "test",
                limit: Annotated[int | None, typer.Option(min=1, help="Items per set (default: the whole half).")] = None,
                fill: Annotated[int, typer.Option(min=0, help="Items in one memory for retention_N (the reported ones, then the other half's); 0: skip.")] = 0,
                updates: Annotated[bool, typer.Option(help="Read and sleep on each biography's job change, then ask about it.")] = True,
                results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """Does the model learn what a user writes? Hand-written biographies, Wikipedia
    paragraphs and notes are read into a bank memory, slept on, and asked about with the
    text gone: accuracy with no context / full context / retrieval / one injection / after
    sleep, locality, knowledge updates, sleep seconds per item, answer latency ratio.
    Wikipedia paragraphs need `reverie data fetch` first."""
    from reverie.eval import bench_learn as bl
    from reverie.eval import results as res
    from reverie.utils import atomic_write_text

    t0 = time.time()
    names = _dev_sets(sets, bl.SETS)
    cfg = bl.LearnBench(sets=names, split=split, limit=limit, fill=fill, updates=updates, seed=seed)
    r = bl.run(None if model == "world" else model, cfg, progress=lambda s: err.print(f"bench learn: {s}", highlight=False))
    r = res.stamp(r, seed, model, t0)
    name = f"bench_learn_{model}"
    out_dir = res.write(name, r, results, f"Learning what a user writes ({model})")
    atomic_write_text(out_dir / f"{name}.md", bl.markdown(r))
    emit(r, as_json, f"Learning what a user writes ({model})")


@bench_app.command("route")
@friendly
def bench_route(as_json: JsonOpt = False, seed: SeedOpt = 0,
                sets: Annotated[str, typer.Option(help="Comma-separated dev sets: bios, wiki, notes.")] = "bios,wiki,notes",
                split: Annotated[str, typer.Option(help="Half whose items are stored and held back: dev (tuned on) or test.")] = "dev",
                bm25_threshold: Annotated[float, typer.Option(help="Least bm25 score at which text+bm25 routes what the text router leaves.")] = 5.0,
                model: Annotated[str | None, typer.Option("--model", help="Also the hidden router, keyed on this model's hidden states (smollm2, or a local model directory).")] = None,
                results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results")) -> None:
    """Which bank router sends a user's questions to the right item and leaves the rest
    alone? Routing only (no model runs, seconds): every other dev-set item stored, the rest
    held back; key, text, bm25 and text+bm25 compared on own questions routed right and
    other questions left unrouted. Wikipedia paragraphs need `reverie data fetch` first."""
    from reverie.eval import bench_route as br
    from reverie.eval import results as res
    from reverie.utils import atomic_write_text

    t0 = time.time()
    names = _dev_sets(sets, br.SETS)
    r = br.run(br.RouteBench(sets=names, split=split, bm25_threshold=bm25_threshold, model=model, seed=seed),
               progress=lambda s: err.print(f"bench route: {s}", highlight=False))
    r = res.stamp(r, seed, model or "none (routing only)", t0)
    out_dir = res.write("bench_route", r, results, "Routing a user's questions")
    atomic_write_text(out_dir / "bench_route.md", br.markdown(r))
    emit(r, as_json, "Routing a user's questions")


@bench_app.command("sequential")
@friendly
def bench_sequential(model: ModelOpt = None, as_json: JsonOpt = False, seed: SeedOpt = 0,
                     t: Annotated[int, typer.Option("--T", min=1, help="Documents consolidated one batch after another.")] = 1000,
                     strategy: Annotated[list[str] | None, typer.Option(help="Merge strategy (repeatable; default: all).")] = None,
                     n_eval: Annotated[int, typer.Option(min=1, help="Questions per metric at each checkpoint.")] = 300,
                     guard: Annotated[bool, typer.Option(help="Pass every update through the interference guard.")] = True,
                     router: Annotated[str, typer.Option(help="The bank's router: key (document keys) or activation (the adapters' own rows).")] = "key",
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
    learner = Learner.load(model, injector="hyper")  # these benchmarks measure the hypernetwork
    from reverie.memory import ROUTERS

    if router not in ROUTERS:
        raise ReverieError(f"unknown router {router!r} (known: {', '.join(ROUTERS)})")
    r = bs.run(learner.bm, learner.injector, tuple(strategy or bs.STRATEGIES), T=t, seed=seed, n_eval=n_eval, guard=guard, route=router)
    r = res.stamp(r | {"summary": bs.summary(r)}, seed, learner.bm.path, t0)
    out_dir = res.write("bench_sequential", r, results, "Sequential injections")
    atomic_write_text(out_dir / "bench_sequential.md", bs.markdown(r))
    bs.plot(r, out_dir / "bench_sequential.png")
    emit(r["summary"] | {"seed": seed, "wall_s": r["wall_s"]}, as_json, "Sequential injections")


@bench_app.command("stream")
@friendly
def bench_stream(model: ModelOpt = None, as_json: JsonOpt = False, seed: SeedOpt = 0,
                 days: Annotated[int, typer.Option(min=1, help="Days in the stream.")] = 30,
                 people_per_day: Annotated[int, typer.Option(min=1, help="New biographies read per day.")] = 3,
                 mode: Annotated[list[str] | None, typer.Option(help="replay, no_replay (merged memory with and without replay) and/or bank (adapter bank routed by document key); repeatable, default all.")] = None,
                 replay_steps: Annotated[int, typer.Option(min=0, help="AdamW steps of each night's replay.")] = 60,
                 replay_items: Annotated[int, typer.Option(min=0, help="Earlier items sampled for each night's replay.")] = 24,
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
               n_per_length: Annotated[int, typer.Option(min=1, help="Questions (one per person) at each length.")] = 64,
               lengths: Annotated[str, typer.Option(help="Comma-separated document lengths in windows.")] = "1,2,4,8",
               needle_trials: Annotated[int, typer.Option(min=1, help="Needles per depth and length.")] = 3,
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
    learner = Learner.load(model, injector="hyper")  # these benchmarks measure the hypernetwork
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
                 seeds: Annotated[int, typer.Option(min=1, help="Held-out streams (the spread is over them).")] = 5,
                 budget: Annotated[int, typer.Option(min=1, help="Consolidations per night for the headline figures.")] = 3,
                 budgets: Annotated[str, typer.Option(help="Budgets for the accuracy-against-budget plot (comma-separated).")] = "1,2,3,4,5,6",
                 nights: Annotated[int, typer.Option(min=1, help="Nights per stream.")] = 8,
                 policy: Annotated[Path | None, typer.Option(help="Policy folder (default: the shipped one).")] = None,
                 cache: Annotated[Path | None, typer.Option(help="Folder caching each stream's answer tables.")] = Path("runs/policy_bench_cache"),
                 workers: Annotated[int, typer.Option(min=1, help="Processes building the answer tables.")] = 1,
                 sleep_nights: Annotated[int, typer.Option(min=0, help="Also run learned vs first inside the whole sleep() (guard, replay) for this many nights of stream --seed (about 30 s a night; 0: skip).")] = 0,
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
