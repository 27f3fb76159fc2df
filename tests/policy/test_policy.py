"""The consolidation policy: environment, baselines, tables against live answers, the
learned selector, training resume and the benchmark command (tiny streams, real model)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reverie.cli import app
from reverie.learner import Learner
from reverie.policy import features as F
from reverie.policy import net as pnet
from reverie.policy.baselines import HEURISTICS, oracle
from reverie.policy.env import ConsolidationEnv, Episode, run
from reverie.policy.stream import BENCH_REGION, PolicyStreamConfig, make_policy_stream
from reverie.policy.tables import THRESHOLD
from reverie.world import World

TINY = PolicyStreamConfig(nights=3, new_per_day=2, known_per_day=1, chatter_per_day=1, questions_per_day=5)


@pytest.fixture(scope="module")
def learner():
    return Learner.load()


@pytest.fixture(scope="module")
def tiny_tables(learner):
    from reverie.policy.train import build_tables

    return build_tables(learner, [101, 102], TINY, None, quiet=True)  # the real model, one thread


def test_streams_are_seeded_and_regions_disjoint():
    w = World()
    a, b = make_policy_stream(w, TINY, 5), make_policy_stream(w, TINY, 5)
    assert [o.text for d in a.days for o in d.observations] == [o.text for d in b.days for o in d.observations]
    bench = make_policy_stream(w, replace(TINY, region=BENCH_REGION), 5)
    train_people = {p.name for p in w.held_out[:1000]}
    assert not set(bench.hot) & train_people and set(a.hot) <= train_people
    kinds = {o.kind for d in a.days for o in d.observations}
    assert {"bio", "known", "chatter"} <= kinds
    assert all(len(d.observations) <= TINY.max_items for d in a.days)


def test_features_see_duplicates_chatter_and_the_ledger():
    w = World()
    p = w.held_out[0]
    bio = w.biography(p, __import__("random").Random(0))
    chatter = "The weather in the valley changed slowly over the afternoon."
    X = F.item_features([bio, chatter, bio], ["a", "b", "a"], [3.0, 14.0, 3.0], [bio[: F.EXCERPT]], set(), 2)
    f = {n: i for i, n in enumerate(F.FEATURES)}
    assert X.shape == (3, F.N_FEATURES) and (X[:, f["valid"]] == 1).all()
    assert X[2, f["duplicate"]] == 1 and X[0, f["duplicate"]] == 0
    assert X[1, f["no_entity"]] == 1 and X[0, f["no_entity"]] == 0
    assert X[0, f["in_ledger"]] == 1 and X[0, f["novelty"]] < 0.5
    assert X[0, f["mentions"]] == pytest.approx(2 / 4)
    assert F.entity(bio) == p.name


def test_env_passes_gymnasium_check(tiny_tables):
    from gymnasium.utils.env_checker import check_env

    env = ConsolidationEnv(tiny_tables, budget=(1, 2), max_items=16)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0, options={"stream": 0, "budget": 2})
    total, done = 0.0, False
    while not done:
        obs, r, done, _, info = env.step(env.action_space.sample())
        assert len(info["chosen"]) <= 2
        total += r
    assert 0.0 - 1e-6 <= info["accuracy"] <= 1.0


@pytest.mark.parametrize("budget", [1, 2])
def test_every_baseline_obeys_the_budget(tiny_tables, budget):
    for t in tiny_tables:
        for name, make in HEURISTICS.items():
            ep, select = Episode(t, budget), make(0)
            while not ep.done:
                night = ep.current()
                chosen = select(night)
                assert len(chosen) <= budget and len(set(chosen)) == len(chosen), name
                assert all(0 <= c < len(night.items) for c in chosen)
                ep.step(chosen)
            assert ep.consolidated <= budget * TINY.nights
        assert run(t, oracle, budget)["consolidated"] <= budget * TINY.nights


def test_oracle_beats_random_on_a_fixed_stream(tiny_tables):
    for t in tiny_tables:
        o = run(t, oracle, 2)["accuracy"]
        rnd = np.mean([run(t, HEURISTICS["random"](s), 2)["accuracy"] for s in range(5)])
        assert o >= rnd


def test_tables_match_live_routing_and_answers(learner, tiny_tables):
    """One memory state scored from the tables equals the live bank: route each question
    with the ActivationRouter, answer with ask_injected under the routed adapter."""
    from reverie.base.metrics import exact_match
    from reverie.hypernet.adapter import Adapter
    from reverie.hypernet.qa import ask_injected
    from reverie.memory.route import ActivationRouter

    t = tiny_tables[0]
    stored = np.zeros(len(t.texts), dtype=bool)
    stored[[i for n in t.nights for i in n[:2]]] = True  # the first two of every night
    qidx = [q for qs in t.questions for q in qs]
    ads = learner.injector.inject_many([t.texts[i] for i in np.nonzero(stored)[0]])
    router = ActivationRouter(learner.bm, threshold=THRESHOLD)
    for x, ad in zip(np.nonzero(stored)[0], ads, strict=True):
        router.add(str(x), [], ad.parts()[0])
    by = {str(x): ad for x, ad in zip(np.nonzero(stored)[0], ads, strict=True)}
    rb = int(ads[0].meta["bias_rank"])
    by["none"] = Adapter({k: (A[:, -rb:], B[..., -rb:]) for k, (A, B) in ads[0].factors.items()}, ads[0].scale)

    class Q:
        def __init__(self, q, key):
            self.question, self.person = q, key

    qs = [Q(t.question_text[q], router.route(t.question_text[q]) or "none") for q in qidx]
    live = 0
    for group in ([q for q in qs if q.person != "none"], [q for q in qs if q.person == "none"]):  # one rank per batch
        if group:
            golds = [t.answers[qidx[qs.index(q)]] for q in group]
            live += sum(exact_match(p, g) for p, g in zip(ask_injected(learner.bm, group, by), golds, strict=True))
    assert live == t.score(stored, qidx)


def test_learned_selector_uses_the_shipped_policy(tmp_path):
    net = pnet.load()  # shipped weights, safetensors
    assert (pnet.DEFAULT_POLICY_DIR / "policy.safetensors").stat().st_size < 200_000
    X = torch.zeros(4, F.N_FEATURES)
    assert net.score(X).abs().sum() == 0  # padding rows score exactly zero
    w = World()
    s = make_policy_stream(w, TINY, 7)
    learner = Learner.load(memory=tmp_path / "m")
    learner._guard = None  # the guard is not what this test is about
    for o in s.days[0].observations:
        learner.read(o.text)
    rep = learner.sleep(selector="learned", budget=2, replay=False)
    assert rep["consolidated"] <= 2 and rep["discarded"] >= len(s.days[0].observations) - 2
    reasons = {e.get("reason") for e in learner.memory.ledger() if e.get("event") == "discarded"}
    assert reasons <= {"duplicate", "policy: over budget", "policy: not worth keeping"}
    learner.close()


def test_learned_selector_without_a_budget_keeps_all_but_duplicates():
    from reverie.policy.selector import choose

    keep, why = choose(["a", "b", "a", "c"], ["1", "2", "1", "3"], None, {"3"})
    assert keep == [0, 1] and why == {2: "duplicate", 3: "duplicate"}
    assert choose(["a", "b", "a"], ["1", "2", "1"], 2, set()) == ([0, 1], {2: "duplicate"})  # the budget does not bind


def test_a_policy_with_other_features_is_refused(tmp_path):
    from reverie.errors import ModelLoadError

    pnet.save(pnet.ItemScorer(), tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(m | {"features": ["valid"]}))
    with pytest.raises(ModelLoadError, match="other features"):
        pnet.load(tmp_path)
    with pytest.raises(ModelLoadError, match="no consolidation policy"):
        pnet.load(tmp_path / "nope")


@pytest.mark.slow
def test_train_policy_resumes_and_bench_reports(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "policy", "--out", str(out), "--streams", "1", "--val-streams", "1", "--nights", "2",
            "--n-envs", "2", "--eval-every", "64", "--json"]
    r = runner.invoke(app, [*args, "--timesteps", "128"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["timesteps"] == 128
    r = runner.invoke(app, [*args, "--timesteps", "256"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["timesteps"] == 256 and min(x["timesteps"] for x in rows[rows.index(rows[-1]) - 2 :]) > 128
    assert pnet.load(out / "best") is not None
    r = runner.invoke(app, [*args[:3], str(tmp_path / "other"), *args[4:], "--timesteps", "128", "--lr", "1e-3"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--timesteps", "256", "--lr", "1e-3"])  # another recipe in the same folder
    assert r.exit_code == 1 and "another recipe" in r.output
    res = tmp_path / "results"
    r = runner.invoke(app, ["bench", "policy", "--json", "--seeds", "2", "--nights", "2", "--budgets", "1,2",
                            "--budget", "2", "--policy", str(out / "best"), "--cache", str(tmp_path / "cache"),
                            "--results", str(res)])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("acc_policy", "acc_oracle", "acc_first", "acc_random", "acc_recency", "acc_surprise", "acc_repeated"):
        assert 0.0 <= j[k] <= 1.0
    assert j["acc_oracle"] >= j["acc_random"] and j["stream_seeds"] == [0, 1]
    assert (res / "bench_policy.png").is_file() and (res / "bench_policy.md").is_file()


def test_bad_policy_options_are_one_clear_line():
    runner = CliRunner()
    r = runner.invoke(app, ["bench", "policy", "--budgets", "0,1"])
    assert r.exit_code == 1 and "at least 1" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "policy", "--budgets", "two"])
    assert r.exit_code == 1 and "expected integers" in r.output
