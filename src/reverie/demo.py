"""`reverie demo`: read a held-out biography, answer with it in context, fail without it,
then inject it into the weights and answer again with the text gone from the context."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from reverie.base.metrics import abstains, exact_match
from reverie.base.model import BaseModel
from reverie.base.qa import documents, sample_questions
from reverie.world import World
from reverie.world.passages import Passage


def run(model: Path | None, n: int, seed: int, console: Console) -> None:
    from reverie.base.real import NAMED
    from reverie.learner import Learner, hypernet_dir

    if model is not None and str(model) in NAMED:
        return run_real(str(model), n, seed, console)

    learner = Learner.load(model, injector="hyper") if hypernet_dir(model).exists() else None
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
    if not ok and abstains(pred):  # an abstention is not a wrong guess
        return f"[yellow]{pred} ?[/yellow]"
    return f"[green]{pred} ✓[/green]" if ok else f"[red]{pred or '(nothing)'} ✗[/red]"


def run_real(model: str, n: int, seed: int, console: Console) -> None:
    """The same on a real model: held-out SQuAD-derived passages, scored with ROUGE-L; where
    the package index does not offer them, held-out Wikipedia articles (gensim's test dump),
    asked about their subject and scored on their opening sentence."""
    from reverie.eval.bench_real import rouge_l
    from reverie.learner import Learner

    learner = Learner.load(model, injector="hyper")  # the demo shows the hypernetwork's one-pass injection
    bm = learner.bm
    r = random.Random(seed)
    n_params = sum(p.numel() for p in bm.model.parameters()) / 1e6
    console.print(f"[bold]model[/bold] {model} ({n_params:.0f}M parameters), hypernetwork "
                  f"on {', '.join(learner.injector.target_names())}", highlight=False)
    tot = {"context": 0.0, "none": 0.0, "inject": 0.0}
    k = 0
    for p in held_out_passages(bm, r, n, console):
        console.print(Panel(p.text, title=f"held-out passage: {p.title.replace('_', ' ')}", expand=False))
        qas = r.sample(p.qas, min(2, len(p.qas)))
        before = [(bm.answer(q, context=p.text), bm.answer(q)) for q, _ in qas]
        t0 = time.perf_counter()
        adapter = learner.inject(p.text)
        console.print(f"  injected into the weights in {(time.perf_counter() - t0) * 1000:.0f} ms (LoRA rank {adapter.rank}, "
                      f"{adapter.nbytes / 1024:.0f} KiB); the passage is no longer in context", highlight=False)
        after = [learner.ask(q) for q, _ in qas]
        learner.remove(adapter)
        for (q, gold), (ctx, none), inj in zip(qas, before, after, strict=True):
            s = {"context": rouge_l(ctx, gold), "none": rouge_l(none, gold), "inject": rouge_l(inj, gold)}
            for key in tot:
                tot[key] += s[key]
            k += 1
            console.print(f"  Q: {q}   gold: [bold]{gold[0]}[/bold]", highlight=False)
            console.print(f"     passage in context   : {ctx}  [dim](ROUGE-L {s['context']:.2f})[/dim]", highlight=False)
            console.print(f"     no passage           : {none}  [dim](ROUGE-L {s['none']:.2f})[/dim]", highlight=False)
            console.print(f"     injected, no passage : {inj}  [dim](ROUGE-L {s['inject']:.2f})[/dim]", highlight=False)
    console.print(f"\nMean ROUGE-L F1 over {k} question{'s' if k != 1 else ''}: in context {tot['context'] / k:.2f}, "
                  f"no passage {tot['none'] / k:.2f}, injected with no passage {tot['inject'] / k:.2f}.", highlight=False)


def held_out_passages(bm: BaseModel, r: random.Random, n: int, console: Console) -> list[Passage]:
    """``n`` held-out SQuAD passages; or, where the index does not offer them, ``n`` held-out
    Wikipedia articles' openings (up to 384 tokens, whole sentences) with one question about
    each subject, whose accepted answer is the opening sentence."""
    from reverie.errors import DataUnavailable
    from reverie.world import passages, wiki

    try:
        return r.sample(passages.load("test"), n)
    except DataUnavailable as e:
        console.print(f"[yellow]no SQuAD passages here ({e})[/yellow]", highlight=False)
    console.print("Reading held-out Wikipedia articles instead (gensim's test dump): each is asked about "
                  "its subject, and answers are scored on the article's opening sentence.", highlight=False)
    # Only articles whose opening defines their subject; only the sampled ones are cut.
    defined = [p for p in wiki.load("test") if p.title.lower() in wiki.first_sentence(p.text).lower()]
    out = []
    for p in r.sample(defined, min(n, len(defined))):
        first = wiki.first_sentence(p.text)
        ids = bm.tokenizer.encode(p.text, add_special_tokens=False)[:384]
        text = str(bm.tokenizer.decode(ids))
        text = text[: text.rfind(". ") + 1] or text  # whole sentences
        who = "Who is" if re.search(r"\bborn\b|\d{4} – \d{1,2} ", first) else "What is"
        subject = f"the {p.title}" if first.startswith(f"The {p.title}") else p.title
        out.append(Passage(p.id, p.source, p.title, text, [(f"{who} {subject}?", [first])]))
    return out
