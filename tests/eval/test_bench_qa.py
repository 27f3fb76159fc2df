"""`reverie bench qa` on a few people: every metric, and locality split into its two halves."""

from reverie.eval import bench_qa
from reverie.learner import Learner


def test_a_small_run_reports_every_metric_and_splits_locality():
    learner = Learner.load()
    r = bench_qa.run(learner.bm, learner.injector, seed=0, n_people=4, n_cd=0, store_size=20)
    for k in ("acc_none", "acc_full", "acc_rag", "acc_inject", "relative_qa", "generalization", "locality",
              "locality_base", "locality_unknown", "inject_ratio", "adapter_bytes"):
        assert k in r, k
    assert r["relative_qa"] == round(r["acc_inject"] / max(r["acc_full"], 1e-9), 4)
    # Every accuracy is exact match over its questions, never the F1 beside it (a prefix
    # without "acc" once wrote its F1 under its own name): a multiple of 1/n.
    for k in ("acc_inject", "generalization", "acc_full_heldout_templates"):
        assert abs(r[k] * r[f"n_{k}"] - round(r[k] * r[f"n_{k}"])) < 0.05, k
    assert "f1_generalization" in r and "f1_inject" in r
    # Four base-population and four unknown people, one question each: the halves average to the whole.
    assert r["n_locality"] == 8
    assert abs((r["locality_base"] + r["locality_unknown"]) / 2 - r["locality"]) < 1e-3
    # One injection leaves the base model's closed-book knowledge alone (1.00 on 60 people, seed 0).
    assert r["locality_base"] >= 0.75
    # The bias adapter alone on the same prompts; the flips it shares are flips of the full adapter.
    assert 0.0 <= r["locality_bias_alone"] <= 1.0
    assert abs(r["locality_bias_alone"] * 8 - round(r["locality_bias_alone"] * 8)) < 1e-3
    assert 0 <= r["n_flips_also_bias_alone"] <= round(8 * (1 - r["locality"]))


def test_another_slice_of_people_is_a_second_sample_and_a_slice_past_the_world_is_refused():
    import pytest

    from reverie.errors import InputError

    learner = Learner.load()
    r = bench_qa.run(learner.bm, learner.injector, seed=0, n_people=2, n_cd=0, store_size=10, held_out_from=1000, base_from=200)
    assert r["held_out_from"] == 1000 and r["base_from"] == 200 and r["n_locality"] == 4
    with pytest.raises(InputError, match="held-out people 1999..2002"):
        bench_qa.run(learner.bm, learner.injector, n_people=2, n_cd=0, held_out_from=1999)
    with pytest.raises(InputError, match="base people 499..500"):
        bench_qa.run(learner.bm, learner.injector, n_people=2, n_cd=0, base_from=499)


def test_score_keys_never_collide():
    from reverie.base.qa import Score

    for prefix, f1 in (("acc_inject", "f1_inject"), ("generalization", "f1_generalization")):
        d = Score(0.5, 0.75, 4, {}).as_dict(prefix)
        assert d[prefix] == 0.5 and d[f1] == 0.75 and d[f"n_{prefix}"] == 4
