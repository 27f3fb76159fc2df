"""The `reverie` command line (Typer). Errors print one line to stderr and exit non-zero."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reverie.cli_common import (  # noqa: F401  (default_memory, JsonOpt: re-exported)
    JsonOpt,
    MemOpt,
    ModelOpt,
    ReadDtypeOpt,
    SeedOpt,
    default_memory,
    emit,
    err,
    friendly,
    out,
)
from reverie.cli_recipes import bench_app, eval_app, train_app
from reverie.errors import ReverieError

if TYPE_CHECKING:
    from reverie.base.model import BaseModel
    from reverie.memory import Memory, Weights

app = typer.Typer(help="reverie: a language model that learns from what it reads.", rich_markup_mode="markdown",
                  no_args_is_help=True, pretty_exceptions_enable=False)
world_app = typer.Typer(help="The synthetic knowledge world.", no_args_is_help=True)
app.add_typer(world_app, name="world")
data_app = typer.Typer(help="Real text, fetched once from the package registry: reading-comprehension passages (SQuAD-, Quoref- and DROP-derived) and Wikipedia articles.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
mem_app = typer.Typer(help="Inspect and edit a weight memory (--memory DIR).", no_args_is_help=True)
export_app = typer.Typer(help="Export a memory: as one peft adapter, or merged into the model.", no_args_is_help=True)
app.add_typer(mem_app, name="memories")
app.add_typer(export_app, name="export")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")



# ---- world ------------------------------------------------------------------------------
@world_app.command("sample")
def world_sample(n: Annotated[int, typer.Option(min=1, help="People to show.")] = 2,
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
    """Download and cache the real text, counting what each split holds.

    Wikipedia articles: gensim 4.4.0's source archive (sha256 checked), whose test data
    holds a shortened English Wikipedia dump; kept as plain prose. Passages: bigbench
    1.0.0's source archive, whose SQuAD-shifts, Quoref and DROP task files are kept.

    Where the package index does not offer an archive, a copy placed at
    ~/.cache/reverie/data/ under its own name (or in $REVERIE_CACHE/data/) is used. The articles
    are kept even when the passages cannot be had (the exit status is then 1)."""
    from reverie.errors import DataUnavailable
    from reverie.world import passages as P
    from reverie.world import wiki as W

    r: dict[str, Any] = {"wiki_folder": str(W.fetch(quiet=as_json)),
                         **{f"wiki_{s}_articles": len(W.load(s)) for s in ("train", "test")}}
    missing = None
    try:
        folder = P.fetch(quiet=as_json)
        counts = {s: (len(ps := P.load(s)), sum(len(p.qas) for p in ps)) for s in P.SPLITS}
        r |= {"folder": str(folder), **{f"{s}_passages": n for s, (n, _) in counts.items()},
              **{f"{s}_questions": q for s, (_, q) in counts.items()}}
    except DataUnavailable as e:
        missing = e
        r["passages"] = "unavailable"
    emit(r, as_json, "Real text")
    if missing is not None:
        raise missing


@app.command()
@friendly
def inject(file: Annotated[str, typer.Argument(help="Text file to inject, or - for standard input.")],
           save: Annotated[Path, typer.Option(help="Folder to write the adapter to (peft format).")],
           model: ModelOpt = None,
           injector: Annotated[str, typer.Option(help="hyper (the hypernetwork) or distill (gradient context distillation).")] = "hyper",
           query: Annotated[list[str] | None, typer.Option(help="Probe question for distill (repeatable).")] = None,
           read_dtype: ReadDtypeOpt = None) -> None:
    """Write a document into a LoRA adapter (peft format)."""
    from reverie.learner import Learner

    if read_dtype is not None and injector != "hyper":
        raise ReverieError(f"--read-dtype sets the hypernetwork's reading; the {injector} injector does not read that way")
    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    learner = Learner.load(model, injector=injector, read_dtype=read_dtype)
    ad = learner.injector.inject(data, query or None)
    ad.save(save, learner.bm.path)
    err.print(f"adapter rank {ad.rank}, {ad.nbytes} bytes, {ad.meta['inject_s'] * 1000:.1f} ms -> {save}")


@app.command()
@friendly
def ask(question: Annotated[str, typer.Argument(help="The question.")],
        adapter: Annotated[list[Path] | None, typer.Option(help="Adapter folder(s) to apply (repeatable).")] = None,
        context: Annotated[Path | None, typer.Option(help="A text file to put in context.")] = None,
        model: ModelOpt = None,
        memory: Annotated[Path | None, typer.Option("--memory", help="Answer with this weight memory merged in (a bank memory: under the items the question routes to), and what was read since its last sleep in context.")] = None,
        working: Annotated[bool, typer.Option(help="With --memory: put what was read since the last sleep in context.")] = True) -> None:
    """Answer a question greedily, optionally with adapters merged in and/or a document in context."""
    from reverie.base.model import BaseModel, decode_input
    from reverie.hypernet.adapter import Adapter
    from reverie.memory import Weights

    if memory is not None:
        bm, mem = _open_memory(memory, model)
        weights = _weights(bm, mem)
    else:
        bm = BaseModel.load(model)
        weights = Weights(bm.model)
    for a in adapter or []:
        weights.inject(Adapter.load(a))
    if context is not None:
        ctx: str | None = decode_input(context.read_bytes())
    elif memory is not None and working:
        from reverie.sleep.buffer import fit_context, memory_buffer

        ctx = fit_context(bm, [o.text for o in memory_buffer(mem, readonly=True).items()], decode_input(question))
    else:
        ctx = None
    with weights.answering(decode_input(question)):  # a bank: under the items the question is about
        out.print(bm.answer(question, ctx), highlight=False, soft_wrap=True)


# ---- memory -----------------------------------------------------------------------------
def _learner(model: Path | None, memory: Path | None, strategy: str | None = None, guard: bool = True):
    from reverie.learner import Learner, default_strategy

    learner = Learner.load(model)
    learner.open_memory(memory or default_memory(), strategy or default_strategy(model), guard=guard)
    return learner


def _open_memory(memory: Path | None, model: Path | None, readonly: bool = True, create: bool = False, strategy: str | None = None,
                 repair: bool = False):
    """A memory for inspection (or, with ``create``, a new one; with ``repair``, its total
    rebuilt if lost), without loading the hypernetwork."""
    from reverie.base.model import BaseModel
    from reverie.hypernet.model import fingerprint
    from reverie.learner import default_strategy
    from reverie.memory import Memory, memory_targets

    strategy = strategy or default_strategy(model)
    p = memory or default_memory()
    if not create and not (p / "memory.json").is_file():
        raise ReverieError(f"no memory at {p} (create one with `reverie consolidate FILE --memory {p}`)")
    bm = BaseModel.load(model)
    return bm, Memory(p, fingerprint(bm.model), memory_targets(bm.model, bm.n_layers, hypernet_targets(model)), strategy,
                      readonly=readonly, repair=repair)


def _weights(bm: BaseModel, mem: Memory) -> Weights:
    """The model's weights with ``mem`` merged in (a bank: routed per question, as the
    learner routes it: ``reverie.sleep.cycle.router_for``)."""
    from reverie.memory import Weights
    from reverie.sleep.cycle import router_for

    return Weights(bm.model, mem, router=router_for(bm))


def hypernet_targets(model: Path | None) -> list[str]:
    """The modules the model's own hypernetwork writes (from its manifest, without loading
    it): what a new memory holds totals for. mlp.down_proj where no manifest names them."""
    from reverie.learner import hypernet_dir

    try:
        return list(json.loads((hypernet_dir(model) / "manifest.json").read_text())["config"]["targets"])
    except (OSError, ValueError, KeyError, TypeError):
        return ["mlp.down_proj"]


@app.command()
@friendly
def consolidate(files: Annotated[list[str], typer.Argument(help="Text files to write into the memory (- for standard input).")],
                memory: MemOpt = None, model: ModelOpt = None,
                strategy: Annotated[str | None, typer.Option(help="Merge strategy of a new memory (add, scaled, orthogonal, ties, dare, svd, bank); default: bank for --model smollm2, add for the embedded model.")] = None,
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
         memory: MemOpt = None, model: ModelOpt = None, as_json: JsonOpt = False,
         strategy: Annotated[str | None, typer.Option(help="Merge strategy of a new memory: add (merged, with replay at sleep) or bank (one adapter per item, routed by document key); default: bank for --model smollm2 (learned at sleep), add for the embedded model; see `reverie consolidate --help`.")] = None) -> None:
    """Put a text into the memory's episodic buffer: answerable at once (working context),
    consolidated into the weights at the next `reverie sleep`."""
    from reverie.hypernet.injectors import check_text
    from reverie.sleep.buffer import memory_buffer

    text = check_text(sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes())
    _, mem = _open_memory(memory, model, readonly=False, create=True, strategy=strategy)  # the writer lock guards the buffer too
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
              budget: Annotated[int | None, typer.Option(min=0, help="Most observations consolidated (the rest are discarded).")] = None,
              replay: Annotated[bool, typer.Option(help="Re-distil earlier items' probes after merging.")] = True,
              guard: Annotated[bool, typer.Option(help="Pass each update through the interference guard.")] = True) -> None:
    """Consolidate the buffer into the weights: select, inject, merge under the guard, then
    replay (merged memories) or repair each new item on its own probes (bank memories)."""
    learner = _learner(model, memory, guard=guard)
    try:
        with err.status("sleeping: probing, injecting, merging, replaying") as status:
            if hasattr(learner.injector, "progress"):  # learning by gradient steps: minutes, so show each step
                learner.injector.progress = lambda k, n, step, loss: status.update(
                    f"sleeping: learning item {k + 1} of {n}, step {step}, loss {loss:.3f}")
            rep = learner.sleep(budget=budget, replay=replay)
    finally:
        learner.close()
    rep.pop("config", None)
    if as_json:
        sys.stdout.write(json.dumps(rep) + "\n")
    else:
        # A long text goes into a bank as several chunk items: count items, not observations.
        repaired = f", {rep['repaired']} repaired" if rep.get("repaired") else ""
        repaired += f", {rep['revised']} earlier items revised" if rep.get("revised") else ""
        out.print(f"{rep['observations']} observations: {rep['consolidated']} items stored "
                  f"({rep['refused']} refused by the guard, {rep['discarded']} discarded, {rep['superseded']} facts superseded{repaired}), "
                  f"replayed {rep['replay_rows']} probes in {rep['sleep_s']:.1f} s", highlight=False)


@mem_app.command("list")
@friendly
def memories_list(memory: MemOpt = None, model: ModelOpt = None, as_json: JsonOpt = False) -> None:
    """Items in the memory: id, when, norm, layers, excerpt."""
    _, mem = _open_memory(memory, model)
    rows = [{k: e.get(k) for k in ("id", "time", "delta_norm", "layers", "exact", "excerpt")}
            for e in mem.live_entries().values()]
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
    bm, mem = _open_memory(memory, model)
    e = mem.item(item) | {"live": item in mem.items}
    probes = e.pop("probes", [])
    if probes:
        seen: dict[str, list] = {}
        for q, a, k in probes:
            seen.setdefault(k, [q, a])  # one question per fact
        rows = list(seen.items())
        now = _weights(bm, mem).answer_all(bm, [q for _, (q, _a) in rows])  # a bank: each under its routes
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


@mem_app.command("repair")
@friendly
def memories_repair(memory: MemOpt = None, model: ModelOpt = None) -> None:
    """Rebuild a memory's derived total (`total-*.safetensors`) from its items and ledger,
    when that file is missing or corrupt; a sound memory is left as it is."""
    _, mem = _open_memory(memory, model, readonly=False, repair=True)
    with mem:
        err.print(f"memory {mem.path}: {mem.repaired or 'sound, nothing to repair'}")


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
    """The memory as one peft LoRA adapter (PeftModel.from_pretrained loads it); a bank
    memory as one adapter per item, a shared one and routes.json (its items' keys)."""
    bm, mem = _open_memory(memory, model)
    weights = _weights(bm, mem)
    weights.export_peft(dest, bm.path)
    if weights.is_bank:
        err.print(f"bank: {len(mem.items)} item adapters in {dest}/items, shared/ and routes.json")
    else:
        err.print(f"adapter -> {dest}")


@export_app.command("merged")
@friendly
def export_merged(dest: Annotated[Path, typer.Argument(help="Folder for the merged model.")], memory: MemOpt = None, model: ModelOpt = None) -> None:
    """The base model with the memory merged in (a plain transformers folder)."""
    bm, mem = _open_memory(memory, model)
    mem.check_mergeable()  # before merging anything in
    _weights(bm, mem).export_merged(dest, bm.tokenizer)
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
def demo(model: ModelOpt = None,
         n: Annotated[int, typer.Option(min=1, help="People (or, with --model smollm2, passages) to show.")] = 2,
         seed: SeedOpt = 0) -> None:
    """Show a model reading held-out text: right in context, lost without, and again after the
    text is injected into its weights and dropped from the context.

    The embedded model reads held-out biographies. With --model smollm2 it reads held-out
    SQuAD passages (scored by ROUGE-L), or, where the package index does not offer them,
    held-out Wikipedia articles asked about their subject."""
    from reverie.demo import run

    run(model, n, seed, out)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # `python -m reverie.cli`, e.g. under torchrun
    app()
