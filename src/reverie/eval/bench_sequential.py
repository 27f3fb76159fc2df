"""`reverie bench sequential`: T documents written one batch after another into one weight
memory, per merge strategy, measured at T = 1, 10, 100, 1000 (the metrics of docs/design.md).

One run per strategy (the WISE protocol's T = 1000 run; smaller T are read off the same
run at their checkpoint, not averaged over separate runs). Documents are injected by the
hypernetwork, consolidated through the interference guard in batches (1, then 9, then 10 at
a time, like sleep cycles), and the memory lives on disk as it would for a user.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from reverie.base.model import BaseModel, Generation
from reverie.eval.qa import ask, ask_injected, documents, sample_questions, score
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.injectors import Injector
from reverie.hypernet.model import fingerprint
from reverie.memory import Guard, Memory, Weights, consolidate, memory_targets, routed
from reverie.memory.route import ROUTERS, Router, key_phrases
from reverie.memory.weights import RouterFactory
from reverie.utils import progress
from reverie.world import QA, World, WorldConfig
from reverie.world.generator import rng

CHECKPOINTS = (1, 10, 100, 1000)
STRATEGIES = ("add", "scaled", "orthogonal", "ties", "dare", "svd", "bank")


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size of this process (MB), from /proc."""
    vals = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                vals[line[:5]] = int(line.split()[1]) / 1024
    except OSError:
        return 0.0, 0.0
    return round(vals.get("VmRSS", 0.0), 1), round(vals.get("VmHWM", 0.0), 1)


def schedule(T: int) -> list[int]:
    """Batch sizes: 1, then up to 10, then 10 at a time."""
    sizes, n = [], 0
    while n < T:
        k = 1 if n == 0 else (10 - n if n < 10 else 10)
        k = min(k, T - n)
        sizes.append(k)
        n += k
    return sizes


def bank_answer(bm: BaseModel, mem: Memory, router: Router, qs: list[QA], docs: dict[str, str] | None = None) -> list[str]:
    """Answers from an adapter bank: each question under the adapter of the item it routes
    to; questions routed nowhere are answered by the base model (batched apart, so they pay
    nothing for the bank)."""
    routes: list[str | None] = [router.route(q.question) for q in qs]
    ctx = [None if docs is None else docs[q.person] for q in qs]
    out: list[str | None] = [None] * len(qs)
    plain = [j for j, i in enumerate(routes) if i is None]
    if plain:
        for j, a in zip(plain, bm.answer_batch([bm.prompt(qs[j].question, ctx[j]) for j in plain]), strict=True):
            out[j] = a
    routed = [j for j, i in enumerate(routes) if i is not None]
    if routed:
        ads = {i: Adapter(mem.factors(i), 1.0) for i in {r for r in routes if r is not None}}
        keyed = [replace(qs[j], person=str(routes[j])) for j in routed]
        for j, a in zip(routed, ask_injected(bm, keyed, ads, contexts=[ctx[j] for j in routed]), strict=True):
            out[j] = a
    return [a or "" for a in out]


def _this_router(router: Router) -> RouterFactory:
    """A bank's router that the benchmark keeps up to date itself (``router.add`` per item)."""
    return lambda _mem: router


def retention_questions(world: World, people: list[Any], seed: int, n_eval: int) -> tuple[list[QA], list[QA]]:
    """The questions ``retention`` and ``generalization`` are scored on after
    ``len(people)`` documents: about ``n_eval`` each, over a seeded sample of the people."""
    r = rng(seed, "seq-eval", str(len(people)))
    sample = people if len(people) <= n_eval else r.sample(people, n_eval)
    per = max(1, min(6, n_eval // len(sample)))
    return sample_questions(world, sample, per, seed), sample_questions(world, sample, per, seed, heldout=True)


def single_injection(bm: BaseModel, inj: Injector, qs: tuple[list[QA], list[QA]], docs: dict[str, str]) -> tuple[float, float]:
    """The T = 1 references for ``retention_T`` and ``generalization_T``: the same questions,
    each asked with only its own document's adapter applied (the average over T = 1 runs,
    one per person; the T = 1 point of one run is a single person's six questions)."""
    names = sorted({q.person for q in qs[0]})
    ads = dict(zip(names, inj.inject_many([docs[n] for n in names]), strict=True))
    return score(ask_injected(bm, qs[0], ads), qs[0]).acc, score(ask_injected(bm, qs[1], ads), qs[1]).acc


def paired_latency(plain: Callable[[QA], object], with_memory: Callable[[QA], object], qs: list[QA],
                   reps: int = 5) -> float:
    """Answer latency with memory over without, on the same questions: each question answered
    ``reps`` times each way, interleaved (the order alternates per repeat), and the fastest
    time of each kept, as ``timeit`` advises. One answer of the embedded model takes ~10 ms:
    timing whole passes instead let the machine's +-10% scheduling noise decide the ratio
    (best-of-3 passes read 1.08-1.15 for an overhead that is 3-5% here)."""
    fast = [0.0, 0.0]
    for q in qs:
        best = [float("inf"), float("inf")]
        for k in range(reps):
            for way in ((0, 1) if k % 2 == 0 else (1, 0)):
                t0 = time.perf_counter()
                (with_memory if way else plain)(q)
                best[way] = min(best[way], time.perf_counter() - t0)
        fast[0] += best[0]
        fast[1] += best[1]
    return fast[1] / max(fast[0], 1e-12)


def routed_latency(bm: BaseModel, weights: Weights, qs: list[QA], cold: bool = False,
                   equal_length: bool = True, gens: dict[str, Generation] | None = None) -> float:
    """Latency ratio of questions answered as ``Learner.ask`` answers them with a bank
    (``Weights.answering``: route, take the item's factors, apply its adapter; then answer)
    over the plain answer; ``weights``: the model's, a bank memory attached.
    Warm: the item's factors are in the memory's answering buffer from an earlier question
    (``SLAB_ITEMS``); ``cold``: every answer reads its item's file first, as the first
    question about it does.

    ``equal_length``: both ways generate, per question, as many tokens as the answer from
    memory has (its stop token included), so the ratio is what the memory costs an answer,
    not the difference in what is said: from memory a stored person's birth date or
    employer comes out whole, where the base model's guess is often shorter (5.6% more
    tokens on 40 questions of a T = 1000 bank). ``answer_lengths`` gives both lengths;
    ``gens``: :func:`equal_lengths` of ``qs`` when the caller already has them."""
    mem = weights.attached()
    if not equal_length:
        gens = {}
    elif gens is None:
        gens = equal_lengths(bm, mem, weights.router(), qs)
    fixed = gens  # (narrowed for the closures)

    def with_memory(q: QA) -> None:
        if cold:
            mem.unload()
        with weights.answering(q.question):
            bm.answer(q.question, gen=fixed.get(q.question))

    return paired_latency(lambda q: bm.answer(q.question, gen=fixed.get(q.question)), with_memory, qs)


def _n_tokens(bm: BaseModel, answer: str) -> int:
    """Tokens generated for ``answer``, its stop token included (at most the generation cap)."""
    return min(len(bm.tokenizer.encode(answer, add_special_tokens=False)) + 1, Generation().max_new_tokens)


def _routed_tokens(bm: BaseModel, mem: Memory, router: Router, q: QA) -> int:
    with routed(bm.model, mem, router, q.question):
        return _n_tokens(bm, bm.answer(q.question))


def equal_lengths(bm: BaseModel, mem: Memory, router: Router, qs: list[QA]) -> dict[str, Generation]:
    """Per question, generation settings that make any answer exactly as long (in tokens
    generated) as the answer from memory."""
    out = {}
    for q in qs:
        n = _routed_tokens(bm, mem, router, q)
        out[q.question] = Generation(max_new_tokens=n, min_new_tokens=n)
    return out


def answer_lengths(bm: BaseModel, mem: Memory, router: Router, qs: list[QA],
                   gens: dict[str, Generation] | None = None) -> tuple[float, float]:
    """Mean generated tokens per answer (the stop token included), plain and from memory;
    ``gens``: :func:`equal_lengths` of ``qs``, whose lengths are the answers from memory."""
    plain = sum(_n_tokens(bm, bm.answer(q.question)) for q in qs)
    if gens is None:
        mine = sum(_routed_tokens(bm, mem, router, q) for q in qs)
    else:
        mine = sum(gens[q.question].max_new_tokens for q in qs)
    return plain / max(len(qs), 1), mine / max(len(qs), 1)


def evaluate(bm: BaseModel, world: World, weights: Weights, people_docs: list[tuple[Any, str]],
             last: list[tuple[Any, str]], refs: dict, seed: int, n_eval: int) -> dict[str, Any]:
    mem = weights.attached()
    router = weights.router() if weights.is_bank else None  # None: the memory is merged into the weights
    ret_q, gen_q = retention_questions(world, [p for p, _ in people_docs], seed, n_eval)
    plast_q = sample_questions(world, [p for p, _ in last], 6, seed)

    def answer(qs: list[QA], docs: dict[str, str] | None = None) -> list[str]:
        if router is None:
            return ask(bm, qs, docs)
        return bank_answer(bm, mem, router, qs, docs)

    t0 = time.perf_counter()

    loc_pred = answer(refs["loc_q"])
    t_ans = time.perf_counter() - t0
    ret_pred = answer(ret_q)
    out: dict[str, Any] = {
        "retention": score(ret_pred, ret_q).acc,
        "plasticity": score(answer(plast_q), plast_q).acc,
        "generalization": score(answer(gen_q), gen_q).acc,
        "locality": sum(a == b for a, b in zip(loc_pred, refs["loc_base"], strict=True)) / len(loc_pred),
    }
    closed = score(answer(refs["closed_q"]), refs["closed_q"]).acc
    ctx = score(answer(refs["ctx_q"], refs["ctx_docs"]), refs["ctx_q"]).acc
    out["competence_closed"] = closed / max(refs["closed_base"], 1e-9)
    out["competence_context"] = ctx / max(refs["ctx_base"], 1e-9)
    out["competence"] = min(out["competence_closed"], out["competence_context"])
    out["delta_norm"] = mem.delta_norm()
    if router is None:
        out["answer_ratio"] = t_ans / refs["loc_s"]  # merged in: against the base model timed before any memory
    else:
        # The bank leaves the base weights as they are, so both ratios are measured paired.
        out["answer_ratio"] = routed_latency(bm, weights, refs["loc_q"][:40])
        gens = equal_lengths(bm, mem, router, ret_q[:40])  # one answer from memory each, for both timings
        out["answer_ratio_routed"] = routed_latency(bm, weights, ret_q[:40], gens=gens)
        out["answer_ratio_routed_cold"] = routed_latency(bm, weights, ret_q[:40], cold=True, gens=gens)
        out["answer_ratio_routed_natural"] = routed_latency(bm, weights, ret_q[:40], equal_length=False)
        out["answer_tokens_plain"], out["answer_tokens_routed"] = answer_lengths(bm, mem, router, ret_q[:40], gens)
    out["memory_bytes"] = mem.nbytes()
    out["rss_mb"], out["peak_rss_mb"] = rss_mb()
    out["n_retention"], out["n_plasticity"] = len(ret_q), len(plast_q)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def run(bm: BaseModel, inj: Injector, strategies: tuple[str, ...] = STRATEGIES, T: int = 1000, seed: int = 0,
        n_eval: int = 300, guard: bool = True, workdir: str | None = None, route: str = "key",
        n_ref: int = 100) -> dict[str, Any]:
    """``route``: the bank's router (``reverie.memory.route``: ``key`` or ``activation``);
    ``n_ref``: unrelated prompts for locality and base people for closed-book competence."""
    world = World(WorldConfig(seed=0))
    if T > len(world.held_out):
        raise ValueError(f"T={T} is more than the {len(world.held_out)} held-out people")
    people = world.held_out[:T]
    docs = documents(world, people, seed)
    r = rng(seed, "seq-refs")
    loc_q = sample_questions(world, r.sample(world.base, n_ref), 1, seed + 1)
    closed_q = sample_questions(world, r.sample(world.base, n_ref), 1, seed + 2)
    ctx_people = world.held_out[-max(6, 3 * n_ref // 5):]
    ctx_docs = documents(world, ctx_people, seed + 3)
    ctx_q = sample_questions(world, ctx_people, 1, seed + 3)
    t0 = time.perf_counter()
    loc_base = ask(bm, loc_q)
    refs = {"loc_q": loc_q, "loc_base": loc_base, "loc_s": time.perf_counter() - t0, "closed_q": closed_q,
            "closed_base": score(ask(bm, closed_q), closed_q).acc, "ctx_q": ctx_q, "ctx_docs": ctx_docs,
            "ctx_base": score(ask(bm, ctx_q, ctx_docs), ctx_q).acc}
    g = Guard(bm, world) if guard else None
    fp = fingerprint(bm.model)
    targets = memory_targets(bm.model, bm.n_layers, list(inj.target_names()))
    res: dict[str, Any] = {"T": T, "n_eval": n_eval, "router": route, "guard": g.config() if g else None,
                           "closed_base": refs["closed_base"], "ctx_base": refs["ctx_base"], "strategies": {}}
    root = Path(workdir or tempfile.mkdtemp(prefix="reverie-seq-"))
    sizes = schedule(T)
    with progress() as bar:
        for name in strategies:
            task = bar.add_task(f"sequential {name}", total=T)
            mdir = root / name
            shutil.rmtree(mdir, ignore_errors=True)
            mem = Memory(mdir, fp, targets, strategy=name)
            router = ROUTERS[route](bm=bm) if name == "bank" else None
            weights = Weights(bm.model, mem, router=None if router is None else _this_router(router))
            curve: dict[int, dict] = {}
            n, refused, t_start, guard_s0 = 0, 0, time.perf_counter(), g.seconds if g else 0.0
            try:
                for k in sizes:
                    batch = list(zip(people[n : n + k], [docs[p.name] for p in people[n : n + k]], strict=True))
                    ads = inj.inject_many([d for _, d in batch])
                    ids = consolidate(weights, ads, [a.meta.get("source_sha256", "") for a in ads], g, [d for _, d in batch])
                    refused += sum(i is None for i in ids)
                    if router is not None:
                        for i, (_, d) in zip(ids, batch, strict=True):
                            if i is not None:
                                router.add(i, key_phrases(d), mem.factors(i))
                    n += k
                    bar.update(task, completed=n)
                    if n in CHECKPOINTS or n == T:
                        curve[n] = evaluate(bm, world, weights, list(zip(people[:n], [docs[p.name] for p in people[:n]], strict=True)),
                                            batch, refs, seed, n_eval) | {"refused": refused}
                        bar.console.log(name, n, {k2: curve[n][k2] for k2 in ("retention", "plasticity", "locality", "competence")})
            finally:
                weights.release()
                mem.close()
            res["strategies"][name] = {"curve": curve, "wall_s": round(time.perf_counter() - t_start, 1),
                                       "guard_s": round((g.seconds if g else 0.0) - guard_s0, 2)}
    if workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    # Measured after every strategy, so its adapters do not count in their memory figures.
    single = single_injection(bm, inj, retention_questions(world, people, seed, n_eval), docs)
    res["acc_inject_single"], res["generalization_single"] = round(single[0], 4), round(single[1], 4)
    return res


METRICS = ("retention", "plasticity", "generalization", "locality", "competence", "delta_norm")
LATENCY = ("answer_ratio", "answer_ratio_routed", "answer_ratio_routed_cold", "answer_ratio_routed_natural",
           "answer_tokens_plain", "answer_tokens_routed")


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """Flat docs/design.md names: ``<metric>_<T>`` per strategy, and the best strategy at the last T."""
    out: dict[str, Any] = {}
    last = res["T"]  # the curve's last point (every checkpoint up to T, and T itself)
    for name, s in res["strategies"].items():
        for T, m in s["curve"].items():
            for k in METRICS + LATENCY + ("memory_bytes", "refused"):
                if k in m:
                    out[f"{name}.{k}_{T}"] = m[k]
    scored = {n: s["curve"][last]["retention"] + s["curve"][last]["locality"] for n, s in res["strategies"].items() if last in s["curve"]}
    if scored:
        best = max(scored, key=lambda n: scored[n])
        out["best_strategy"] = best
        for k in ("retention", "generalization", "locality", "competence"):
            out[f"{k}_{last}"] = res["strategies"][best]["curve"][last][k]
        if "acc_inject_single" in res:
            out["acc_inject_single"], out["generalization_single"] = res["acc_inject_single"], res["generalization_single"]
            out[f"retention_{last}_over_single"] = round(out[f"retention_{last}"] / max(res["acc_inject_single"], 1e-9), 4)
            out[f"generalization_{last}_over_single"] = round(out[f"generalization_{last}"] / max(res["generalization_single"], 1e-9), 4)
    return out


def plot(res: dict[str, Any], path: Path) -> Path:
    """One panel per metric against T (log axis), a line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, k in zip(axes.flat, METRICS, strict=True):
        for name, s in res["strategies"].items():
            Ts = sorted(int(t) for t in s["curve"])
            ax.plot(Ts, [s["curve"][t if t in s["curve"] else str(t)][k] for t in Ts], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_title(k)
        ax.set_xlabel("T (documents consolidated)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"reverie bench sequential (seed {res.get('seed')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(res: dict[str, Any]) -> str:
    """A table per metric: strategies down, T across."""
    Ts = sorted({int(t) for s in res["strategies"].values() for t in s["curve"]})
    lines = ["# Sequential injections", "", f"`{res.get('command', '')}` (seed {res.get('seed')}, model {res.get('model')})", ""]
    for k in METRICS + LATENCY + ("memory_bytes", "rss_mb", "refused"):
        if not any(k in m for s in res["strategies"].values() for m in s["curve"].values()):
            continue
        lines += [f"## {k}", "", "| strategy | " + " | ".join(f"T={t}" for t in Ts) + " |", "| --- |" + " --- |" * len(Ts)]
        for name, s in res["strategies"].items():
            c = {int(t): m for t, m in s["curve"].items()}
            lines.append(f"| {name} | " + " | ".join(str(c[t].get(k, "")) if t in c else "" for t in Ts) + " |")
        lines.append("")
    lines += ["| strategy | wall s | guard s |", "| --- | --- | --- |"]
    lines += [f"| {n} | {s['wall_s']} | {s['guard_s']} |" for n, s in res["strategies"].items()]
    return "\n".join(lines) + "\n"
