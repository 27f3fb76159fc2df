"""`reverie bench policy`: future-question accuracy at a fixed consolidation budget for
the learned policy, each heuristic and the oracle, on held-out streams.

Streams: seeds ``seed .. seed + seeds - 1`` over the held-out region of people that no
training stream reads (``BENCH_REGION``); training used seeds from 10 000 up over another
region. Every selector lives through the same streams with the same answer tables (the
real injection and the real greedy answers, :mod:`reverie.policy.tables`). Reported: the
mean over streams and its spread (sample standard deviation, min, max), per selector and
budget, and a plot of accuracy against budget.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reverie.policy import net as pnet
from reverie.policy.baselines import HEURISTICS, oracle, scorer_select
from reverie.policy.env import run
from reverie.policy.stream import BENCH_REGION, PolicyStreamConfig
from reverie.policy.train import build_tables

SELECTORS = ("policy", *HEURISTICS, "oracle")


def evaluate(tables: list, budgets: tuple[int, ...], policy: pnet.ItemScorer,
             progress: Callable[[str], None] | None = None
             ) -> tuple[dict[str, dict[int, list[float]]], dict[str, dict[int, list[int]]]]:
    """({selector: {budget: [accuracy per stream]}}, the same for consolidations made)."""
    pick = scorer_select(lambda X: policy.score(X).numpy())
    acc: dict[str, dict[int, list[float]]] = {s: {b: [] for b in budgets} for s in SELECTORS}
    used: dict[str, dict[int, list[int]]] = {s: {b: [] for b in budgets} for s in SELECTORS}
    for b in budgets:
        for t in tables:
            for name in SELECTORS:
                sel = pick if name == "policy" else oracle if name == "oracle" else HEURISTICS[name](t.seed)
                r = run(t, sel, b)
                acc[name][b].append(r["accuracy"])
                used[name][b].append(r["consolidated"])
        if progress is not None:
            progress(f"budget {b} done")
    return acc, used


def _spread(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"mean": round(float(a.mean()), 4), "std": round(float(a.std(ddof=1)) if len(a) > 1 else 0.0, 4),
            "min": round(float(a.min()), 4), "max": round(float(a.max()), 4)}


def bench(seed: int = 0, seeds: int = 5, budget: int = 3, budgets: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
          nights: int = 8, policy_dir: str | Path | None = None, cache: Path | None = None, workers: int = 1,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from reverie.learner import Learner

    learner = Learner.load()
    policy = pnet.load(policy_dir)
    cfg = PolicyStreamConfig(nights=nights, region=BENCH_REGION)
    stream_seeds = list(range(seed, seed + seeds))
    tables = build_tables(learner, stream_seeds, cfg, cache, "held-out streams", quiet=True, workers=workers)
    budgets = tuple(sorted(set(budgets) | {budget}))
    acc, used = evaluate(tables, budgets, policy, progress)
    main = {s: _spread(acc[s][budget]) for s in SELECTORS}
    heur = {s: main[s]["mean"] for s in HEURISTICS}
    best = max(heur, key=lambda s: heur[s])
    out: dict[str, Any] = {"acc_policy": main["policy"]["mean"], "acc_oracle": main["oracle"]["mean"]}
    out |= {f"acc_{s}": main[s]["mean"] for s in HEURISTICS}
    out |= {
        "budget": budget, "nights": nights, "stream_seeds": stream_seeds, "people_region": list(BENCH_REGION),
        "questions": [t.n_questions for t in tables],
        "observations": [sum(len(n) for n in t.nights) for t in tables],
        "best_heuristic": best,
        "policy_minus_best_heuristic": round(main["policy"]["mean"] - heur[best], 4),
        "policy_over_oracle": round(main["policy"]["mean"] / max(main["oracle"]["mean"], 1e-9), 4),
        "target_heuristic_plus_0.10": bool(main["policy"]["mean"] >= heur[best] + 0.10),
        "target_0.90_oracle": bool(main["policy"]["mean"] >= 0.90 * main["oracle"]["mean"]),
        "spread": main,
        "consolidated_per_stream": {s: round(float(np.mean(used[s][budget])), 2) for s in SELECTORS},
        "per_seed": {s: [round(x, 4) for x in acc[s][budget]] for s in SELECTORS},
        "curves": {s: {str(b): _spread(acc[s][b]) for b in budgets} for s in SELECTORS},
        "policy_manifest": {k: v for k, v in _manifest(policy_dir).items() if k in ("command", "val_acc", "timesteps", "train_s")},
    }
    return out


def full_sleep(seed: int, nights: int, budget: int, selectors: tuple[str, ...] = ("learned", "first"),
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The selectors inside the whole ``sleep()`` (add strategy, guard, probe replay,
    transfer), not the bank of the environment: one held-out stream (``seed``), read by day,
    slept by night under ``budget``, the next day's questions answered from the weights
    alone (working context off). Slow: about 30 s a night."""
    import torch

    from reverie.policy.stream import make_policy_stream
    from reverie.world import World

    stream = make_policy_stream(World(), PolicyStreamConfig(nights=nights, region=BENCH_REGION), seed)
    out: dict[str, Any] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread, as for the tables (see train.build_tables)
    try:
        out = _full_sleep(stream, selectors, nights, budget, progress)
    finally:
        torch.set_num_threads(threads)
    return out | {"stream_seed": seed, "nights": nights}


def _full_sleep(stream, selectors: tuple[str, ...], nights: int, budget: int,
                progress: Callable[[str], None] | None) -> dict[str, Any]:
    import tempfile

    from reverie.base.qa import score
    from reverie.learner import Learner

    out: dict[str, Any] = {}
    n = 0
    for sel in selectors:
        with tempfile.TemporaryDirectory() as tmp:
            learner = Learner.load(memory=Path(tmp) / "memory")
            right, n, daily, refused = 0.0, 0, [], 0
            for d in range(nights):
                for o in stream.days[d].observations:
                    learner.read(o.text)
                rep = learner.sleep(budget=budget, selector=sel)
                refused += rep["refused"]
                qs = stream.days[d + 1].questions
                sc = score([learner.ask(q.question, working=False) for q in qs], qs)
                right, n = right + sc.acc * sc.n, n + sc.n
                daily.append(round(sc.acc, 4))
                if progress is not None:
                    progress(f"full sleep: {sel} night {d + 1}/{nights}")
            learner.close()
        out[sel] = {"accuracy": round(right / max(1, n), 4), "daily": daily, "refused_by_guard": refused}
    return out | {"questions": n}


def _manifest(policy_dir: str | Path | None) -> dict:
    import json

    p = Path(policy_dir or pnet.DEFAULT_POLICY_DIR) / "manifest.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def plot(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for s in SELECTORS:
        c = res["curves"][s]
        bs = sorted(int(b) for b in c)
        m = np.array([c[str(b)]["mean"] for b in bs])
        sd = np.array([c[str(b)]["std"] for b in bs])
        colors = {"policy": "C3", "first": "C0", "random": "C7", "recency": "C2", "surprise": "C1", "repeated": "C4", "oracle": "k"}
        style: dict[str, Any] = {"color": colors.get(s), "lw": 2.5 if s == "policy" else 1, "ls": "--" if s == "oracle" else "-"}
        ax.plot(bs, m, marker="o", label="learned policy" if s == "policy" else s, **style)
        ax.fill_between(bs, m - sd, m + sd, alpha=0.12, color=style.get("color"))
    ax.set_xlabel("consolidations per night (budget)")
    ax.set_ylabel("future-question accuracy (weights only)")
    ax.set_ylim(0, 1.0)
    ax.set_title(f"reverie bench policy: {len(res['stream_seeds'])} held-out streams, ±1 s.d.")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(res: dict[str, Any]) -> str:
    b = res["budget"]
    rows = ["# Consolidation policy: learned vs heuristics vs oracle", "",
            f"`{res.get('command', '')}` (seed {res.get('seed')}; streams {res['stream_seeds']}, people "
            f"{res['people_region']} of the held-out population, {res['nights']} nights)", "",
            f"Future-question accuracy at budget {b} per night, mean over streams (s.d., min-max):", "",
            "| selector | accuracy | s.d. | min | max | consolidated per stream |", "| --- | --- | --- | --- | --- | --- |"]
    for s in SELECTORS:
        m = res["spread"][s]
        rows.append(f"| {'learned policy' if s == 'policy' else s} | {m['mean']} | {m['std']} | {m['min']} | {m['max']} | "
                    f"{res['consolidated_per_stream'][s]} |")
    rows += ["", f"Best heuristic: {res['best_heuristic']}; policy - best heuristic = {res['policy_minus_best_heuristic']} "
             f"(target >= 0.10: {'met' if res['target_heuristic_plus_0.10'] else 'missed'}); policy / oracle = "
             f"{res['policy_over_oracle']} (target >= 0.90: {'met' if res['target_0.90_oracle'] else 'missed'}).", "",
             "| selector | " + " | ".join(f"budget {x}" for x in sorted(int(k) for k in res["curves"]["policy"])) + " |",
             "| --- |" + " --- |" * len(res["curves"]["policy"])]
    for s in SELECTORS:
        c = res["curves"][s]
        rows.append(f"| {s} | " + " | ".join(f"{c[str(x)]['mean']}" for x in sorted(int(k) for k in c)) + " |")
    if "full_sleep" in res:
        fs = res["full_sleep"]
        rows += ["", f"Inside the whole sleep() (add, guard, replay), stream {fs['stream_seed']}, {fs['nights']} nights, "
                 f"{fs['questions']} questions: " + ", ".join(f"{k} {v['accuracy']}" for k, v in fs.items() if isinstance(v, dict)) + "."]
    return "\n".join(rows) + "\n\n![accuracy against budget](bench_policy.png)\n"


__all__ = ["SELECTORS", "bench", "evaluate", "full_sleep", "markdown", "plot"]
