"""`reverie bench stream` on a short stream: every mode runs and reports its figures."""

from reverie.eval import bench_stream as bst


def test_a_short_stream_reports_each_mode():
    r = bst.run(None, seed=0, days=3, people_per_day=2, guard=False, modes=("no_replay", "bank"))
    for mode in ("no_replay", "bank"):
        m = r[mode]
        assert len(m["daily_acc"]) == 3 and m["daily_acc"][0] is None  # nobody read before day 1
        for k in ("final_acc", "final_acc_heldout_templates", "update_success", "stale_rate", "locality", "sleep_s"):
            assert 0.0 <= m[k] <= (1.0 if k != "sleep_s" else 1e6)
    assert r["bank"]["replays_refused"] == 0 and r["bank"]["locality"] == 1.0
    assert "| bank |" in bst.markdown(r)
