"""`reverie train policy`: PPO (Stable-Baselines3) on the consolidation environment.

Why PPO from a library: the action is a set of observations per night and the reward
comes a day later and keeps coming (a stored person is asked about on every later day),
so the credit must flow across nights (GAE over 8-night episodes); SB3's PPO does that, with
its clipping and advantage normalisation, and the only custom part is the policy network.
The policy is :class:`reverie.policy.net.ItemScorer` (permutation-invariant scores per
observation, padded to ``max_items``); SB3 sees it as a features extractor whose output
is [scores, value], with a Gaussian over the scores (one shared noise scale). The
environment keeps the ``budget`` highest sampled scores above zero.

Run folder (``--out``): ``cache/`` (each training stream's answer tables, built once with
the real model: :mod:`reverie.policy.tables`), ``ckpt/`` (policy weights as safetensors,
optimizer state, JSON state: rerunning the same command resumes), ``best/`` (the policy
with the best validation accuracy so far), ``log.jsonl``. Validation streams are training
-region streams with their own seeds; the benchmark's streams (held-out region, other
seeds) are never seen. ``--export`` ships ``best/`` as the default policy.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from reverie.policy import net as pnet
from reverie.policy.baselines import scorer_select
from reverie.policy.env import ConsolidationEnv, run
from reverie.policy.stream import TRAIN_REGION, PolicyStreamConfig, make_policy_stream
from reverie.policy.tables import StreamTables, build

TRAIN_SEED0 = 10_000
"""Training stream seeds are ``TRAIN_SEED0 + 1000 * seed + i``; validation ones follow
them (``+ streams + j``). Benchmark seeds are small numbers in the held-out region."""


@dataclass
class PolicyRecipe:
    """Everything that decides the trained policy (recorded in the manifest)."""

    seed: int = 0
    timesteps: int = 60_000
    """Environment steps (nights)."""
    budget: int = 3
    """Consolidations per night (validation runs at this budget)."""
    budgets: str = "1,2,3,4,5"
    """Budgets drawn per training episode (comma-separated), so one policy serves all."""
    streams: int = 64
    """Training streams (each with its tables built once)."""
    val_streams: int = 16
    """Validation streams (best checkpoint by their accuracy)."""
    nights: int = 8
    cost: float = 0.002
    """Reward cost per consolidation (accuracy units)."""
    n_envs: int = 8
    n_steps: int = 64
    """Steps per environment per rollout (rollout = n_envs * n_steps nights)."""
    batch_size: int = 128
    n_epochs: int = 8
    lr: float = 3e-4
    gamma: float = 1.0
    """Undiscounted: an episode's return is its accuracy."""
    gae_lambda: float = 0.95
    ent_coef: float = 0.0
    log_std_init: float = -0.5
    hidden: int = 64
    eval_every: int = 4096
    """Environment steps between validation runs and checkpoints."""
    workers: int = 1
    """Processes building the answer tables (does not change the result)."""


def stream_config(nights: int, region: tuple[int, int] = TRAIN_REGION) -> PolicyStreamConfig:
    return PolicyStreamConfig(nights=nights, region=region)


def build_tables(learner, seeds: list[int], cfg: PolicyStreamConfig, cache: Path | None, label: str = "streams",
                 quiet: bool = False, workers: int = 1) -> list[StreamTables]:
    """Tables for every seed (cached), with a progress bar. ``workers`` > 1 (with a cache)
    builds the missing ones in that many processes first (one torch thread each)."""
    from reverie.world import World

    world = World()
    # Small batches through a 4.8M-parameter model: one thread each is fastest, and two
    # threads beside another busy process ran ten times slower here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build_tables(learner, world, seeds, cfg, cache, label, quiet, workers)
    finally:
        torch.set_num_threads(threads)


def _build_tables(learner, world, seeds: list[int], cfg: PolicyStreamConfig, cache: Path | None, label: str,
                  quiet: bool, workers: int) -> list[StreamTables]:
    from reverie.utils import progress

    if workers > 1 and cache is not None:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with progress() as bar, ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            task = bar.add_task(f"tables: {label} ({workers} processes)", total=len(seeds), visible=not quiet)
            for _ in pool.map(_build_one, [(s, cfg, str(cache)) for s in seeds]):
                bar.advance(task)
    out = []
    with progress() as bar:
        task = bar.add_task(f"tables: {label}", total=len(seeds), visible=not quiet and workers <= 1)
        for s in seeds:
            out.append(build(learner, make_policy_stream(world, cfg, s), cache))
            bar.advance(task)
    return out


_WORKER: dict = {}


def _build_one(job: tuple[int, PolicyStreamConfig, str]) -> int:
    """One stream's tables into the cache (in a worker process)."""
    from reverie.learner import Learner
    from reverie.world import World

    seed, cfg, cache = job
    if not _WORKER:
        torch.set_num_threads(1)
        _WORKER.update(learner=Learner.load(), world=World())
    build(_WORKER["learner"], make_policy_stream(_WORKER["world"], cfg, seed), Path(cache))
    return seed


def _sb3_classes():
    """The SB3 pieces, imported lazily (the selector and the benchmark need only torch)."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class Extractor(BaseFeaturesExtractor):
        """Wraps the ItemScorer: features = [scores (N), value (1)]."""

        def __init__(self, observation_space, hidden: int = 64):
            n, f = observation_space.shape
            super().__init__(observation_space, features_dim=n + 1)
            self.scorer = pnet.ItemScorer(f, hidden)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            s, v = self.scorer(obs)  # (B, N), (B,)
            return torch.cat([s, v[:, None]], 1)  # (B, N + 1)

    class Slice(nn.Module):
        def __init__(self, a: int, b: int):
            super().__init__()
            self.a, self.b = a, b

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, self.a : self.b]

    class ScorerPolicy(ActorCriticPolicy):
        """Actor = the scorer's scores, critic = its value; one log-std for every score."""

        def _build(self, lr_schedule) -> None:
            self._build_mlp_extractor()  # net_arch=[]: identity
            n = int(self.action_space.shape[0])  # type: ignore[index]
            self.action_net = Slice(0, n)  # type: ignore[assignment]
            self.value_net = Slice(n, n + 1)  # type: ignore[assignment]
            self.log_std = nn.Parameter(torch.full((1,), float(self.log_std_init)))
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    return Extractor, ScorerPolicy


def evaluate(scorer: pnet.ItemScorer, tables: list[StreamTables], budget: int) -> float:
    """Mean future-question accuracy of the greedy (mean-score) policy over streams."""
    pick = scorer_select(lambda X: scorer.score(X).numpy())
    return float(np.mean([run(t, pick, budget)["accuracy"] for t in tables]))


def setup(out: str = "runs/policy", rc: PolicyRecipe | None = None, export: bool = False,
          export_dir: Path | None = None, quiet: bool = False) -> dict:
    """Train (or resume) under ``out``; returns a summary. See the module notes."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    from reverie.learner import Learner
    from reverie.utils import load_train_state, progress, save_train_state

    rc = recipe = rc or PolicyRecipe()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    recipe_file = root / "recipe.json"
    if recipe_file.is_file() and json.loads(recipe_file.read_text()) | {"timesteps": rc.timesteps, "workers": rc.workers} != asdict(rc):
        from reverie.errors import ReverieError

        raise ReverieError(f"{root} holds a run with another recipe ({recipe_file}): use another --out")
    recipe_file.write_text(json.dumps(asdict(rc), indent=2))
    # The network is tiny (17 k parameters): one thread is fastest, and several threads
    # beside another busy process slowed PPO tenfold here (spinning OpenMP workers).
    torch.set_num_threads(1)
    torch.manual_seed(rc.seed)
    learner = Learner.load()
    cfg = stream_config(rc.nights)
    base = TRAIN_SEED0 + 1000 * rc.seed
    train_t = build_tables(learner, [base + i for i in range(rc.streams + rc.val_streams)], cfg, root / "cache",
                           "training and validation streams", quiet, rc.workers)
    train_t, val_t = train_t[: rc.streams], train_t[rc.streams :]
    budgets = tuple(int(b) for b in rc.budgets.split(",")) if rc.budgets else (rc.budget,)
    venv = DummyVecEnv([lambda: ConsolidationEnv(train_t, budgets, rc.cost) for _ in range(rc.n_envs)])
    venv.seed(rc.seed)
    Extractor, ScorerPolicy = _sb3_classes()
    model = PPO(ScorerPolicy, venv, learning_rate=rc.lr, n_steps=rc.n_steps, batch_size=rc.batch_size,
                n_epochs=rc.n_epochs, gamma=rc.gamma, gae_lambda=rc.gae_lambda, ent_coef=rc.ent_coef,
                seed=rc.seed, verbose=0, device="cpu",
                policy_kwargs={"net_arch": [], "features_extractor_class": Extractor,
                               "features_extractor_kwargs": {"hidden": rc.hidden},
                               "ortho_init": False, "log_std_init": rc.log_std_init})
    ck = root / "ckpt"
    state = load_train_state(ck, model.policy, model.policy.optimizer) or {"timesteps": 0, "best": -1.0, "elapsed": 0.0}
    model.num_timesteps = int(state["timesteps"])
    scorer: pnet.ItemScorer = model.policy.features_extractor.scorer  # type: ignore[assignment]
    log = open(root / "log.jsonl", "a")
    clock = [time.time()]  # training wall time is added to the state at each checkpoint

    def checkpoint() -> None:
        acc = evaluate(scorer, val_t, rc.budget)
        now = time.time()
        state.update(timesteps=int(model.num_timesteps), elapsed=round(state["elapsed"] + now - clock[0], 1))
        clock[0] = now
        row = {"timesteps": state["timesteps"], "val_acc": round(acc, 4), "elapsed_s": state["elapsed"],
               "log_std": round(float(model.policy.log_std.detach()[0]), 3), "train_acc": _recent(episodes)}  # type: ignore[index]
        if acc > state["best"]:
            state["best"] = acc
            state["best_timesteps"] = state["timesteps"]
            pnet.save(scorer, root / "best.tmp", {"val_acc": round(acc, 4), "timesteps": state["timesteps"]})
            shutil.rmtree(root / "best", ignore_errors=True)
            (root / "best.tmp").rename(root / "best")
        save_train_state(ck, model.policy, model.policy.optimizer, state)
        log.write(json.dumps(row) + "\n")
        log.flush()
        if not quiet:
            print(json.dumps(row), file=sys.stderr, flush=True)

    episodes: list[float] = []

    class Hook(BaseCallback):
        def __init__(self, bar, task):
            super().__init__()
            self.bar, self.task = bar, task
            self.next = (model.num_timesteps // recipe.eval_every + 1) * recipe.eval_every

        def _on_step(self) -> bool:
            for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
                if done:
                    episodes.append(float(info["accuracy"]))
            self.bar.update(self.task, completed=min(self.num_timesteps, recipe.timesteps))
            if self.num_timesteps >= self.next:
                self.next += recipe.eval_every
                checkpoint()
            return True

    if state["timesteps"] == 0:
        checkpoint()  # the untrained policy's validation accuracy: the first log row
    left = rc.timesteps - int(model.num_timesteps)
    if left > 0:
        with progress() as bar:
            task = bar.add_task("PPO nights", total=rc.timesteps, completed=model.num_timesteps, visible=not quiet)
            model.learn(total_timesteps=left, callback=Hook(bar, task), reset_num_timesteps=False)
        checkpoint()
    log.close()
    summary = {"out": str(root), "timesteps": state["timesteps"], "best_val_acc": round(state["best"], 4),
               "best_timesteps": state.get("best_timesteps"), "train_s": state["elapsed"]}
    if export:
        dest = Path(export_dir or pnet.DEFAULT_POLICY_DIR)
        net = pnet.load(root / "best")
        argv = " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("reverie") else " ".join(sys.argv)
        pnet.save(net, dest, {"recipe": asdict(rc), "command": f"reverie {argv}" if not argv.startswith("reverie") else argv,
                              "val_acc": round(state["best"], 4), "timesteps": state.get("best_timesteps"),
                              "train_s": state["elapsed"]})
        summary["exported"] = str(dest)
    return summary


def _recent(xs: list[float], n: int = 200) -> float | None:
    return round(float(np.mean(xs[-n:])), 4) if xs else None


__all__ = ["PolicyRecipe", "TRAIN_SEED0", "build_tables", "evaluate", "setup", "stream_config"]
