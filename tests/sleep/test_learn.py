"""Sleep-time learning (the ``learn`` injector) through the user's path: read, sleep, ask."""

from __future__ import annotations

import pytest

from reverie.errors import InputError
from reverie.hypernet.fit import FitConfig
from reverie.learner import Learner
from reverie.sleep.learn import LearnInjector
from reverie.world import World


def test_a_bank_that_learns_at_sleep_answers_with_the_text_gone(tmp_path) -> None:
    w = World()
    p = w.held_out[3]
    learner = Learner.load(memory=tmp_path / "m", strategy="bank", injector="learn")
    assert isinstance(learner.injector, LearnInjector) and learner.injector.prober == "world"
    q = f"In which city does {p.name} work?"
    assert learner.ask(q) != p.attrs["employer_city"]
    learner.read(w.biography(p, __import__("random").Random(0)))
    rep = learner.sleep()
    assert rep["consolidated"] == 1 and "repaired" not in rep  # fitted to its probes: nothing to repair
    assert learner.ask(q, working=False) == p.attrs["employer_city"]
    stranger = w.held_out[4]
    assert learner.route(f"Where was {stranger.name} born?") is None  # unrelated questions stay the base model's
    learner.close()


def test_learning_needs_something_to_ask_about(tmp_path) -> None:
    learner = Learner.load(injector="learn")
    with pytest.raises(InputError, match="nothing to learn"):
        learner.injector.inject("zzz qqq")  # the world prober finds no biography sentence in it


def test_a_warm_start_needs_a_hypernetwork_of_the_fits_shape() -> None:
    hyper = Learner.load().injector
    with pytest.raises(InputError, match="warm start"):
        LearnInjector(hyper.bm, FitConfig(rank=hyper.hyper.cfg.rank + 1), warm=hyper)  # type: ignore[attr-defined]
