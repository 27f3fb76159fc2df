"""`reverie bench sequential`: T documents written one batch after another into one weight
memory, per merge strategy, measured at T = 1, 10, 100, 1000 (design.md's metrics).

One run per strategy (the WISE protocol's T = 1000 run; smaller T are read off the same
run at their checkpoint, not averaged over separate runs). Documents are injected by the
hypernetwork, consolidated through the interference guard in batches (1, then 9, then 10 at
a time, like sleep cycles), and the memory lives on disk as it would for a user.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from reverie.base.model import BaseModel
from reverie.eval.qa import ask, ask_injected, documents, sample_questions, score
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.injectors import Injector
from reverie.hypernet.model import fingerprint
from reverie.memory import Attached, Guard, Memory, consolidate, memory_targets
from reverie.utils import progress
from reverie.world import QA, World, WorldConfig
from reverie.world.generator import _rng

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


class Router:
    """Adapter-bank routing (WISE-like side memory) on the adapters' own keys: each item's
    rows of A at one layer are directions in the space of that layer's down-projection
    inputs (the hypernetwork points them at the document's own activations); a question
    goes to the item whose key fires most strongly (cosine) on any of its tokens, or to none
    below ``threshold``. Layer 0 routed best (0.70 of questions to the right item among 100,
    against 0.58, 0.0, 0.22 for layers 2, 1, 3); the threshold sits between the median best
    score of questions about stored people (0.66) and about others (0.45)."""

    def __init__(self, bm: BaseModel, target: str = "mlp.down_proj", layer: int = 0, threshold: float = 0.55):
        self.bm, self.target = bm, target
        self.layer, self.threshold = layer, threshold
        self.keys: list[torch.Tensor] = []  # per item (r, d_in), unit rows
        self.ids: list[str] = []
        self._K: torch.Tensor | None = None

    def add(self, item_id: str, factors: dict) -> None:
        A = factors[self.target][0][self.layer]  # (r, d_in)
        self.ids.append(item_id)
        self.keys.append(torch.nn.functional.normalize(A.float(), dim=-1).half())
        self._K = None

    @torch.no_grad()
    def _acts(self, question: str) -> torch.Tensor:
        from reverie.hypernet.lora import target_module

        seen: list[torch.Tensor] = []
        h = target_module(self.bm.model, self.layer, self.target).register_forward_pre_hook(lambda _m, a: seen.append(a[0][0]))
        try:
            self.bm.model(torch.tensor([self.bm.encode(self.bm.prompt(question))[-self.bm.max_length:]]))
        finally:
            h.remove()
        return torch.nn.functional.normalize(seen[0], dim=-1)  # (T, d_in)

    def route(self, question: str) -> str | None:
        if not self.keys:
            return None
        if self._K is None:
            self._K = torch.cat(self.keys).float()  # (n * r, d_in)
        r = self.keys[0].shape[0]
        sims = (self._K @ self._acts(question).T).abs().amax(-1).view(-1, r).amax(-1)  # (n,)
        best = int(sims.argmax())
        return self.ids[best] if float(sims[best]) >= self.threshold else None


def evaluate(bm: BaseModel, world: World, mem: Memory, router: Router | None, people_docs: list[tuple[Any, str]],
             last: list[tuple[Any, str]], refs: dict, seed: int, n_eval: int) -> dict[str, Any]:
    r = _rng(seed, "seq-eval", str(len(people_docs)))
    sample = [p for p, _ in people_docs] if len(people_docs) <= n_eval else r.sample([p for p, _ in people_docs], n_eval)
    per = max(1, min(6, n_eval // len(sample)))
    ret_q = sample_questions(world, sample, per, seed)
    gen_q = sample_questions(world, sample, per, seed, heldout=True)
    plast_q = sample_questions(world, [p for p, _ in last], 6, seed)

    t0 = time.perf_counter()
    if router is None:
        answer = lambda qs: ask(bm, qs)  # noqa: E731  # the memory is merged into the weights
    else:
        def answer(qs: list[QA]) -> list[str]:
            routes = [router.route(q.question) for q in qs]
            ads = {i: Adapter(mem.factors(i), 1.0) for i in set(routes) if i is not None}
            keyed = [replace(q, person=str(j)) for j, q in enumerate(qs)]
            if not ads:
                return ask(bm, qs)
            zero = Adapter({t: (torch.zeros_like(A), torch.zeros_like(B)) for t, (A, B) in next(iter(ads.values())).factors.items()}, 1.0)
            return ask_injected(bm, keyed, {f"{j}": ads[i] if i is not None else zero for j, i in enumerate(routes)})

    loc_pred = answer(refs["loc_q"])
    t_ans = time.perf_counter() - t0
    out: dict[str, Any] = {
        "retention": score(answer(ret_q), ret_q).acc,
        "plasticity": score(answer(plast_q), plast_q).acc,
        "generalization": score(answer(gen_q), gen_q).acc,
        "locality": sum(a == b for a, b in zip(loc_pred, refs["loc_base"], strict=True)) / len(loc_pred),
    }
    closed = score(answer(refs["closed_q"]), refs["closed_q"]).acc
    ctx = score(bm.answer_batch([bm.prompt(q.question, refs["ctx_docs"][q.person]) for q in refs["ctx_q"]]), refs["ctx_q"]).acc
    out["competence_closed"] = closed / max(refs["closed_base"], 1e-9)
    out["competence_context"] = ctx / max(refs["ctx_base"], 1e-9)
    out["competence"] = min(out["competence_closed"], out["competence_context"])
    out["delta_norm"] = mem.delta_norm()
    out["answer_ratio"] = t_ans / refs["loc_s"]
    out["memory_bytes"] = mem.nbytes()
    out["rss_mb"], out["peak_rss_mb"] = rss_mb()
    out["n_retention"], out["n_plasticity"] = len(ret_q), len(plast_q)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def run(bm: BaseModel, inj: Injector, strategies: tuple[str, ...] = STRATEGIES, T: int = 1000, seed: int = 0,
        n_eval: int = 300, guard: bool = True, workdir: str | None = None) -> dict[str, Any]:
    world = World(WorldConfig(seed=0))
    if T > len(world.held_out):
        raise ValueError(f"T={T} is more than the {len(world.held_out)} held-out people")
    people = world.held_out[:T]
    docs = documents(world, people, seed)
    r = _rng(seed, "seq-refs")
    loc_q = sample_questions(world, r.sample(world.base, 100), 1, seed + 1)
    closed_q = sample_questions(world, r.sample(world.base, 100), 1, seed + 2)
    ctx_people = world.held_out[-60:]
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
    res: dict[str, Any] = {"T": T, "n_eval": n_eval, "guard": g.config() if g else None,
                           "closed_base": refs["closed_base"], "ctx_base": refs["ctx_base"], "strategies": {}}
    root = Path(workdir or tempfile.mkdtemp(prefix="reverie-seq-"))
    sizes = schedule(T)
    with progress() as bar:
        for name in strategies:
            task = bar.add_task(f"sequential {name}", total=T)
            mdir = root / name
            shutil.rmtree(mdir, ignore_errors=True)
            mem = Memory(mdir, fp, targets, strategy=name)
            att = Attached(bm.model, mem)
            router = Router(bm) if name == "bank" else None
            curve: dict[int, dict] = {}
            n, refused, t_start, guard_s0 = 0, 0, time.perf_counter(), g.seconds if g else 0.0
            try:
                for k in sizes:
                    batch = list(zip(people[n : n + k], [docs[p.name] for p in people[n : n + k]], strict=True))
                    ads = inj.inject_many([d for _, d in batch])
                    ids = consolidate(att, ads, [a.meta.get("source_sha256", "") for a in ads], g)
                    refused += sum(i is None for i in ids)
                    if router is not None:
                        for i in ids:
                            if i is not None:
                                router.add(i, mem.factors(i))
                    n += k
                    bar.update(task, completed=n)
                    if n in CHECKPOINTS or n == T:
                        curve[n] = evaluate(bm, world, mem, router, list(zip(people[:n], [docs[p.name] for p in people[:n]], strict=True)),
                                            batch, refs, seed, n_eval) | {"refused": refused}
                        bar.console.log(name, n, {k2: curve[n][k2] for k2 in ("retention", "plasticity", "locality", "competence")})
            finally:
                att.detach()
                mem.close()
            res["strategies"][name] = {"curve": curve, "wall_s": round(time.perf_counter() - t_start, 1),
                                       "guard_s": round((g.seconds if g else 0.0) - guard_s0, 2)}
    if workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return res


METRICS = ("retention", "plasticity", "generalization", "locality", "competence", "delta_norm")


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """Flat design.md names: ``<metric>_<T>`` per strategy, and the best strategy at the last T."""
    out: dict[str, Any] = {}
    last = max(CHECKPOINTS + (res["T"],)) if res["T"] in CHECKPOINTS else res["T"]
    for name, s in res["strategies"].items():
        for T, m in s["curve"].items():
            for k in METRICS + ("answer_ratio", "memory_bytes", "refused"):
                out[f"{name}.{k}_{T}"] = m[k]
    scored = {n: s["curve"][last]["retention"] + s["curve"][last]["locality"] for n, s in res["strategies"].items() if last in s["curve"]}
    if scored:
        best = max(scored, key=lambda n: scored[n])
        out["best_strategy"] = best
        for k in ("retention", "generalization", "locality", "competence"):
            out[f"{k}_{last}"] = res["strategies"][best]["curve"][last][k]
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
    for k in METRICS + ("answer_ratio", "memory_bytes", "rss_mb", "refused"):
        lines += [f"## {k}", "", "| strategy | " + " | ".join(f"T={t}" for t in Ts) + " |", "| --- |" + " --- |" * len(Ts)]
        for name, s in res["strategies"].items():
            c = {int(t): m for t, m in s["curve"].items()}
            lines.append(f"| {name} | " + " | ".join(str(c[t][k]) if t in c else "" for t in Ts) + " |")
        lines.append("")
    lines += ["| strategy | wall s | guard s |", "| --- | --- | --- |"]
    lines += [f"| {n} | {s['wall_s']} | {s['guard_s']} |" for n, s in res["strategies"].items()]
    return "\n".join(lines) + "\n"
