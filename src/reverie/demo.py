"""`reverie demo`: read a held-out biography, answer with it in context, fail without it,
then inject it into the weights and answer again with the text gone from the context."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from reverie.base.model import BaseModel
from reverie.eval.metrics import exact_match
from reverie.eval.qa import documents, sample_questions
from reverie.world import World


def run(model: Path | None, n: int, seed: int, console: Console) -> None:
    from reverie.learner import Learner, hypernet_dir

    learner = Learner.load(model) if hypernet_dir(model).exists() else None
    bm = learner.bm if learner else BaseModel.load(model)
    world = World()
    people = world.held_out[:n]
    docs = documents(world, people, seed)
    qas = sample_questions(world, people, 3, seed)
    n_params = sum(p.numel() for p in bm.model.parameters()) / 1e6
    console.print(f"[bold]model[/bold] {bm.path} ({n_params:.1f}M parameters, context {bm.max_length} tokens)",
                  highlight=False)
    hits = {"context": 0, "none": 0, "inject": 0}
    for p in people:
        console.print(Panel(docs[p.name], title=f"held-out biography: {p.name}", expand=False))
        mine = [q for q in qas if q.person == p.name]
        before = {q.question: (bm.answer(q.question, context=docs[p.name]), bm.answer(q.question)) for q in mine}
        after = {}
        if learner is not None:
            t0 = time.perf_counter()
            adapter = learner.inject(docs[p.name])
            dt = time.perf_counter() - t0
            console.print(f"  injected into the weights in {dt * 1000:.1f} ms (LoRA rank {adapter.rank}, "
                          f"{adapter.nbytes / 1024:.0f} KiB); the biography is no longer in context", highlight=False)
            after = {q.question: learner.ask(q.question) for q in mine}
            learner.remove(adapter)  # the next person starts from the plain model
        for q in mine:
            ctx, none = before[q.question]
            hits["context"] += int(exact_match(ctx, q.answer))
            hits["none"] += int(exact_match(none, q.answer))
            console.print(f"  Q: {q.question}   gold: [bold]{q.answer}[/bold]", highlight=False)
            console.print(f"     document in context   : {mark(ctx, q.answer)}", highlight=False)
            console.print(f"     no document           : {mark(none, q.answer)}", highlight=False)
            if after:
                hits["inject"] += int(exact_match(after[q.question], q.answer))
                console.print(f"     injected, no document : {mark(after[q.question], q.answer)}", highlight=False)
    total = len(qas)
    line = f"\nCorrect: in context {hits['context']}/{total}, no document {hits['none']}/{total}"
    if learner is not None:
        line += f", injected with no document {hits['inject']}/{total}."
    else:
        line += ". (No hypernetwork shipped yet: `reverie train hypernet --export` makes one.)"
    console.print(line, highlight=False)


def mark(pred: str, gold: str) -> str:
    ok = exact_match(pred, gold)
    return f"[green]{pred} ✓[/green]" if ok else f"[red]{pred or '(nothing)'} ✗[/red]"
