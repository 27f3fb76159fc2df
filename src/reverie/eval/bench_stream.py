"""`reverie bench stream`: a learner lives through a world stream, reading by day and
sleeping by night, with and without replay.

Each day it reads the day's observations (biographies, employer updates), then answers the
day's questions about people read on *earlier* days from its weights alone (working
context off), then sleeps. At the end: accuracy on everything consolidated, the updates'
``update_success`` and ``stale_rate``, locality (closed-book answers about the base
population unchanged from the base model's), and total sleep time against reading time.
The reference is single injection on the same people: each original biography injected
alone into the plain model (``acc_inject`` on the final questions about people whose facts
never changed; ``final_over_inject_<mode>`` divides the stream's accuracy on those same
questions, ``final_acc_unchanged``, by it). ``update_success`` and ``stale_rate`` compare
answers as exact match does; a stale answer is any value the fact had before its latest
update.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from reverie.base.metrics import exact_match
from reverie.base.model import BaseModel
from reverie.base.qa import score
from reverie.hypernet.qa import ask_injected
from reverie.world import ATTRIBUTES, World
from reverie.world.stream import StreamConfig, make_stream

MODES = ("replay", "no_replay", "bank")
"""replay / no_replay: the default merged memory (``add``) with and without replay; bank: the
adapter bank routed by document key (no replay: its items share no weights)."""


def run(model: str | None, seed: int = 0, days: int = 30, people_per_day: int = 3, guard: bool = True,
        modes: tuple[str, ...] = MODES, replay_steps: int = 60, replay_items: int = 24, progress=None) -> dict[str, Any]:
    world = World()
    stream = make_stream(world, StreamConfig(days=days, people_per_day=people_per_day), seed=seed)
    final_q = stream.final_questions(world)
    rh = random.Random(f"{seed}:heldout")
    # The same facts asked with question templates no prober or training run ever used:
    # whether what sleep wrote answers the fact, not the phrasings it was fitted on.
    final_h = [replace(world.question(stream.people[q.person], q.attribute, rh, "heldout"), answer=q.answer) for q in final_q]
    probes = stream.update_probes()
    changed = stream.changed
    r = random.Random(seed)
    unrelated = [world.question(p, r.choice(ATTRIBUTES), r) for p in r.sample(world.base, 100)]
    plain = BaseModel.load(model)
    base_answers = plain.answer_batch([plain.prompt(q.question) for q in unrelated])
    out: dict[str, Any] = {"replay_steps": replay_steps, "replay_items": replay_items, "days": days, "people": len(stream.people), "updates": len(probes),
                           "observations": sum(len(d.observations) for d in stream.days), "guard": guard}
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp:
            from reverie.learner import Learner

            learner = Learner.load(model)
            learner.open_memory(Path(tmp) / "memory", strategy="bank" if mode == "bank" else "add", guard=guard)
            curve: list[float | None] = []
            read_s, sleep_s, nights = 0.0, 0.0, []
            for day in stream.days:
                t0 = time.perf_counter()
                for o in day.observations:
                    learner.read(o.text)
                read_s += time.perf_counter() - t0
                if day.questions:
                    preds = [learner.ask(q.question, working=False) for q in day.questions]
                    curve.append(round(score(preds, day.questions).acc, 4))
                else:
                    curve.append(None)
                t0 = time.perf_counter()
                rep = learner.sleep(replay=mode == "replay", replay_steps=replay_steps, replay_items=replay_items, seed=seed)
                sleep_s += time.perf_counter() - t0
                nights.append({k: rep.get(k) for k in ("consolidated", "refused", "superseded", "replay_rows", "repaired", "sleep_s")}
                              | {"replay_refused": "replay_item" in rep and rep["replay_item"] is None})
                if progress is not None:
                    progress(f"{mode} day {day.index + 1}/{days}")
            preds = [learner.ask(q.question, working=False) for q in final_q]
            final = score(preds, final_q)
            # The same questions as the single-injection reference (people whose facts never
            # changed): final_over_inject compares like with like.
            same = [(p, q) for p, q in zip(preds, final_q, strict=True) if q.person not in changed]
            final_same = score([p for p, _ in same], [q for _, q in same])
            final_held = score([learner.ask(q.question, working=False) for q in final_h], final_h)
            up = [learner.ask(q.question, working=False) for q, _ in probes]
            now = [learner.ask(q.question, working=False) for q in unrelated]
            res = {
                "daily_acc": curve,
                "final_acc": round(final.acc, 4),
                "final_acc_unchanged": round(final_same.acc, 4),
                "final_acc_per_attribute": final.per_attribute,
                "final_acc_heldout_templates": round(final_held.acc, 4),
                "update_success": round(sum(exact_match(p, q.answer) for p, (q, _) in zip(up, probes, strict=True)) / max(1, len(probes)), 4),
                "stale_rate": round(sum(any(exact_match(p, s) for s in stale) for p, (_, stale) in zip(up, probes, strict=True))
                                    / max(1, len(probes)), 4),
                "locality": round(sum(a == b for a, b in zip(now, base_answers, strict=True)) / len(unrelated), 4),
                "read_s": round(read_s, 3), "sleep_s": round(sleep_s, 3),
                "sleep_over_read": round(sleep_s / max(read_s, 1e-9), 1),
                "consolidated": sum(n["consolidated"] or 0 for n in nights),
                "refused": sum(n["refused"] or 0 for n in nights),
                "replays_refused": sum(bool(n["replay_refused"]) for n in nights),
                "superseded_links": sum(n["superseded"] or 0 for n in nights),
                "repaired": sum(n["repaired"] or 0 for n in nights),
                "memory_items": len(learner.memory.items) if learner.memory else 0,
            }
            learner.close()
        out[mode] = res
    out |= reference(model, world, stream, final_q, final_h)
    for mode in modes:
        out[f"final_acc_{mode}"] = out[mode]["final_acc"]
        out[f"final_over_inject_{mode}"] = round(out[mode]["final_acc_unchanged"] / max(out["acc_inject"], 1e-9), 3)
    return out


def reference(model: str | None, world: World, stream: Any, final_q: list, final_h: list) -> dict[str, Any]:
    """Single injection on the stream's own people: each one's first biography alone (also
    on the held-out question templates)."""
    from reverie.learner import Learner

    learner = Learner.load(model)
    first: dict[str, str] = {}
    for d in stream.days:
        for o in d.observations:
            if o.kind == "bio" and o.person not in first:
                first[o.person] = o.text
    changed = stream.changed
    qs = [q for q in final_q if q.person not in changed]
    qh = [q for q in final_h if q.person not in changed]
    ads = dict(zip(first, learner.injector.inject_many(list(first.values())), strict=True))
    return {"acc_inject": round(score(ask_injected(learner.bm, qs, ads), qs).acc, 4), "n_acc_inject": len(qs),
            "acc_inject_heldout_templates": round(score(ask_injected(learner.bm, qh, ads), qh).acc, 4)}


def plot(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for mode in MODES:
        if mode in res:
            ys = res[mode]["daily_acc"]
            ax.plot([i + 1 for i, y in enumerate(ys) if y is not None], [y for y in ys if y is not None], marker=".", label=mode.replace("_", " "))
    ax.axhline(res["acc_inject"], color="grey", ls="--", lw=1, label="single injection")
    ax.set_xlabel("day")
    ax.set_ylabel("accuracy on earlier days' questions (weights only)")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.set_title(f"reverie bench stream (seed {res.get('seed')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(res: dict[str, Any]) -> str:
    rows = ["# Stream: reading by day, sleeping by night", "", f"`{res.get('command', '')}` (seed {res.get('seed')})", "",
            f"{res['days']} days, {res['observations']} observations, {res['people']} people, {res['updates']} updated facts; "
            f"guard {'on' if res['guard'] else 'off'}. Single injection on the same people: acc_inject {res['acc_inject']}.", "",
            "| | final_acc | final (unchanged people) / acc_inject | held-out templates | update_success | stale_rate | locality | sleep_s | read_s | sleep / read | refused |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode in MODES:
        if mode in res:
            m = res[mode]
            rows.append(f"| {mode} | {m['final_acc']} | {res[f'final_over_inject_{mode}']} | {m.get('final_acc_heldout_templates', '')} | {m['update_success']} | "
                        f"{m['stale_rate']} | {m['locality']} | {m['sleep_s']} | {m['read_s']} | {m['sleep_over_read']} | {m['refused']} |")
    return "\n".join(rows) + "\n\n![daily accuracy](bench_stream.png)\n"


__all__ = ["MODES", "markdown", "plot", "run"]
