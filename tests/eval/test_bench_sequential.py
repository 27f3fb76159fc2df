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
    # Questions about base-population people name nobody in the bank, so nothing routes; only
    # the hypernetwork's shared context-independent bias (kept in the bank's dense total, so
    # every prompt gets it) acts on them. With the shipped weights it moves 1 of these 20.
    assert bank["locality"] >= 0.9 and bank["competence_closed"] >= 0.9
    assert r["strategies"]["bank"]["curve"][1]["locality"] == bank["locality"]  # the same at T = 1 and 12: nothing routes
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


def test_equal_length_latency_times_the_same_number_of_tokens_both_ways(tmp_path):
    # The routed ratio compares answers of one length: each question's answer from memory
    # sets it, and the plain answer is made to generate exactly as many tokens.
    from reverie.base.qa import documents, sample_questions
    from reverie.memory import routed
    from reverie.world import World, WorldConfig

    learner = Learner.load()
    learner.open_memory(tmp_path / "m", strategy="bank", guard=False)
    world = World(WorldConfig(seed=0))
    people = world.held_out[:3]
    docs = documents(world, people, 0)
    learner.consolidate([docs[p.name] for p in people])
    mem, bm = learner.memory, learner.bm
    router = mem.router()
    qs = sample_questions(world, people, 2, 0)
    steps = [0]
    h = bm.model.register_forward_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))
    try:
        gens = bs.equal_lengths(bm, mem, router, qs)
        for q in qs:
            g = gens[q.question]
            steps[0] = 0
            bm.answer(q.question, gen=g)
            plain = steps[0]
            steps[0] = 0
            with routed(bm.model, mem, router, q.question) as items:
                bm.answer(q.question, gen=g)
            assert items  # every question names a stored person
            assert plain == steps[0] == g.max_new_tokens  # one forward per generated token
    finally:
        h.remove()
    tokens_plain, tokens_routed = bs.answer_lengths(bm, mem, router, qs)
    assert tokens_routed == sum(gens[q.question].max_new_tokens for q in qs) / len(qs)
    assert tokens_plain >= 1
    assert bs.answer_lengths(bm, mem, router, qs, gens) == (tokens_plain, tokens_routed)  # the lengths reused


def test_summary_names_the_last_point_of_a_run_that_ends_on_a_checkpoint():
    m = {"retention": 0.9, "generalization": 0.8, "locality": 1.0, "competence": 1.0}
    res = {"T": 100, "strategies": {"bank": {"curve": {1: m, 10: m, 100: m}}},
           "acc_inject_single": 0.9, "generalization_single": 0.8}
    s = bs.summary(res)
    assert s["best_strategy"] == "bank" and s["retention_100"] == 0.9 and s["retention_100_over_single"] == 1.0
