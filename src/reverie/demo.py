"""`reverie demo`: what the model can do with a document in context and without it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from reverie.base.model import BaseModel
from reverie.eval.metrics import exact_match
from reverie.eval.qa import documents, sample_questions
from reverie.world import World


def run(model: Path | None, n: int, seed: int, console: Console) -> None:
    bm = BaseModel.load(model)
    world = World()
    people = world.held_out[:n]
    docs = documents(world, people, seed)
    qas = sample_questions(world, people, 3, seed)
    console.print(f"[bold]model[/bold] {bm.path}  ({sum(p.numel() for p in bm.model.parameters()) / 1e6:.1f}M parameters, "
                  f"context {bm.max_length} tokens)", highlight=False)
    hits = {"context": 0, "none": 0}
    for p in people:
        console.print(Panel(docs[p.name], title=f"held-out biography: {p.name}", expand=False))
        for qa in (q for q in qas if q.person == p.name):
            with_ctx = bm.answer(qa.question, context=docs[p.name])
            without = bm.answer(qa.question)
            hits["context"] += int(exact_match(with_ctx, qa.answer))
            hits["none"] += int(exact_match(without, qa.answer))
            console.print(f"  Q: {qa.question}   gold: [bold]{qa.answer}[/bold]", highlight=False)
            console.print(f"     in context : {mark(with_ctx, qa.answer)}", highlight=False)
            console.print(f"     no context : {mark(without, qa.answer)}", highlight=False)
    total = len(qas)
    console.print(f"\nCorrect with the document in context: {hits['context']}/{total}; "
                  f"without it: {hits['none']}/{total}. Closing that gap without the document "
                  "in context is what injection and sleep are for.")


def mark(pred: str, gold: str) -> str:
    ok = exact_match(pred, gold)
    return f"[green]{pred} ✓[/green]" if ok else f"[red]{pred or '(nothing)'} ✗[/red]"
