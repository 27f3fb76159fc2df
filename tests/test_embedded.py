"""End-to-end checks on the embedded default model (marked slow; CI runs them too)."""

import json

import pytest
from typer.testing import CliRunner

from reverie.base.model import DEFAULT_MODEL_DIR, BaseModel
from reverie.cli import app
from reverie.utils import sha256_file

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_manifest_checksums_match():
    man = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    for name, digest in man["sha256"].items():
        assert sha256_file(DEFAULT_MODEL_DIR / name) == digest, name
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 25 * 2**20


def test_embedded_model_reads_in_context_and_knows_base_people():
    from reverie.eval.base_eval import evaluate

    r = evaluate(BaseModel.load(), seed=7, n_held_out=10, n_base=20)
    assert r["acc_full"] >= 0.75  # the benchmark measures the real figure on 600 questions
    assert r["acc_none"] <= 0.10
    assert r["acc_closed"] >= 0.8
    from reverie.world.templates import QUESTIONS_HELDOUT

    assert sorted(r["heldout_per_template"]) == sorted(t for ts in QUESTIONS_HELDOUT.values() for t in ts)
    assert all(0.0 <= v <= 1.0 for v in r["heldout_per_template"].values())


def test_questions_carry_the_template_they_were_formatted_from():
    """``per_template`` groups answers by ``QA.template``."""
    import random

    from reverie.world import ATTRIBUTES, World, WorldConfig
    from reverie.world.templates import QUESTIONS_HELDOUT

    world = World(WorldConfig(seed=0))
    names = [t for a in ATTRIBUTES for t in QUESTIONS_HELDOUT[a]]
    for p in world.held_out[:3]:
        qs = world.questions(p, heldout=True)
        assert [q.question for q in qs] == [t.format(name=p.name, poss=p.poss) for t in names]
        assert [q.template for q in qs] == names
        q = world.question(p, "major", random.Random(0), "paraphrase")
        assert q.question == q.template.format(name=p.name, poss=p.poss)


def test_demo_runs():
    r = runner.invoke(app, ["demo", "--n", "1"])
    assert r.exit_code == 0, r.output
    assert "in context" in r.output


def test_learner_inject_then_answer_without_context():
    pytest.importorskip("reverie.learner")
    from reverie.base.metrics import exact_match
    from reverie.base.qa import documents, sample_questions
    from reverie.learner import Learner
    from reverie.world import World

    if not (DEFAULT_MODEL_DIR / "hypernet").exists():
        pytest.skip("no hypernetwork shipped")
    learner = Learner.load()
    assert learner.injector.read_dtype == "float32"  # as every figure of the embedded model was measured
    w = World()
    people = w.held_out[:4]
    docs = documents(w, people, 3)
    hits = total = 0
    for p in people:
        ad = learner.inject(docs[p.name])
        for q in sample_questions(w, [p], 6, 3):
            hits += exact_match(learner.ask(q.question), q.answer)
            total += 1
        learner.remove(ad)
    assert hits / total >= 0.3  # bench qa measures acc_inject properly (0.51 on 360 questions)
