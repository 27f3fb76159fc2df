"""`reverie bench sequential` on a few documents: the metrics and the T = 1 references."""

from reverie.eval import bench_sequential as bs
from reverie.learner import Learner


def test_schedule_batches_one_then_up_to_ten():
    assert bs.schedule(25) == [1, 9, 10, 5]
    assert sum(bs.schedule(1000)) == 1000


def test_a_small_run_reports_every_metric_and_the_bank_leaves_strangers_alone(tmp_path):
    learner = Learner.load()
    r = bs.run(learner.bm, learner.injector, ("add", "bank"), T=12, n_eval=24, guard=False, workdir=str(tmp_path), n_ref=20)
    assert set(r["strategies"]) == {"add", "bank"}
    for s in r["strategies"].values():
        assert set(s["curve"]) == {1, 10, 12}
        for m in bs.METRICS + ("competence_closed", "competence_context", "answer_ratio", "peak_rss_mb"):
            assert m in s["curve"][12]
    bank = r["strategies"]["bank"]["curve"][12]
    # Questions about base-population people name nobody in the bank: nothing routes, nothing changes.
    assert bank["locality"] == 1.0 and bank["competence_closed"] == 1.0
    assert 0.0 <= r["acc_inject_single"] <= 1.0
    s = bs.summary(r | {"seed": 0})
    assert {"retention_12_over_single", "generalization_12_over_single", "best_strategy"} <= set(s)
    assert bs.markdown(r).startswith("# Sequential injections")


def test_paired_latency_keeps_each_questions_fastest_time(monkeypatch):
    # A fake clock: every call of a way costs its fixed time, except one slow outlier per way
    # (the scheduler noise the pairing is there to drop).
    clock = [0.0]
    monkeypatch.setattr(bs.time, "perf_counter", lambda: clock[0])
    calls = {"plain": 0, "memory": 0}

    def way(name: str, cost: float):
        def f(_q):
            calls[name] += 1
            clock[0] += cost * (50 if calls[name] == 3 else 1)
        return f

    qs = [object(), object()]
    r = bs.paired_latency(way("plain", 1.0), way("memory", 1.25), qs, reps=3)  # type: ignore[arg-type]
    assert r == 1.25 and calls == {"plain": 6, "memory": 6}
