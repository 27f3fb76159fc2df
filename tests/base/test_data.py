"""Training data of the embedded base model: the needle stage's segments."""

import random

import torch

from reverie.base.data import IGNORE, Segmenter, batch
from reverie.world.templates import NEEDLE_QUESTION, UNKNOWN_ANSWER
from tests.conftest import template_pattern


def test_a_needle_segment_asks_for_the_number_it_holds(tokenizer, world):
    seg = Segmenter(tokenizer, world)
    for i in range(20):
        ids, lab = seg.needle(random.Random(i))
        text = tokenizer.decode(ids)
        value = text.split("special magic number is ")[1][:7]
        assert value.isdigit() and NEEDLE_QUESTION in text
        answer = tokenizer.decode([t for t, y in zip(ids, lab, strict=True) if y != IGNORE])
        assert answer.strip() == value  # loss on the answer alone


def test_needles_change_nothing_unless_asked_for(tokenizer, world):
    seg = Segmenter(tokenizer, world)
    args = (seg, 0, 3, 4, 1024, 0.45, 0.3, 0.15)  # rows long enough for the tiny tokenizer
    plain = batch(*args)
    assert all(torch.equal(a, b) for a, b in zip(plain, batch(*args, p_needle=0.0), strict=True))
    ids, _ = batch(*args, p_needle=1.0)
    rows = [tokenizer.decode([t for t in row.tolist() if t != tokenizer.pad_token_id]) for row in ids]
    assert all("special magic number" in r for r in rows)


def test_an_unknown_segment_abstains_only_about_strangers(tokenizer, world):
    seg = Segmenter(tokenizer, world)
    base = {p.name: p for p in world.base}
    fresh = world.skill_people(3)
    n_unknown = n_known = 0
    for i in range(20):
        ids, lab = seg.unknown(world.base, fresh, random.Random(i), k=4)
        text = tokenizer.decode(ids)
        answers = [tokenizer.decode([t for t, y in zip(ids, lab, strict=True) if y != IGNORE])]
        blocks = [b for b in text.split("Question: ")[1:]]
        assert len(blocks) == 4 and any(UNKNOWN_ANSWER in b for b in blocks), answers
        for b in blocks:
            q, a = b.split("\nAnswer: ")
            a = a.strip()
            known = [p for name, p in base.items() if name in q]
            if a == UNKNOWN_ANSWER:
                n_unknown += 1
                assert not known  # strangers only: a base person always gets their fact
            else:
                n_known += 1
                assert known and a in known[0].attrs.values()
    assert n_unknown > 20 and n_known > 10


def test_unknown_segments_change_nothing_unless_asked_for(tokenizer, world):
    seg = Segmenter(tokenizer, world)
    args = (seg, 0, 3, 4, 1024, 0.45, 0.3, 0.15)
    plain = batch(*args)
    assert all(torch.equal(a, b) for a, b in zip(plain, batch(*args, p_unknown=0.0), strict=True))
    ids, _ = batch(*args, p_unknown=1.0)
    rows = [tokenizer.decode([t for t in row.tolist() if t != tokenizer.pad_token_id]) for row in ids]
    assert all(UNKNOWN_ANSWER in r and "Context:" not in r for r in rows)


def test_paraphrases_appear_only_when_asked_for(tokenizer, world):
    from reverie.world.templates import QUESTIONS_PARAPHRASE

    args = (0, 3, 4, 1024, 0.45, 0.3, 0.15)
    plain = batch(Segmenter(tokenizer, world), *args)
    assert all(torch.equal(a, b) for a, b in zip(plain, batch(Segmenter(tokenizer, world, 0.0), *args), strict=True))
    ids, _ = batch(Segmenter(tokenizer, world, 1.0), *args)
    text = " ".join(tokenizer.decode([t for t in row.tolist() if t != tokenizer.pad_token_id]) for row in ids)
    asked = [line.split("Question: ", 1)[1] for line in text.split("\n") if "Question: " in line]
    forms = [t.split("{name}") for a in QUESTIONS_PARAPHRASE for t in QUESTIONS_PARAPHRASE[a]]
    assert asked and all(any(q.startswith(h) and q.endswith(t) for h, t in forms) for q in asked)


def test_which_questions_appear_only_when_asked_for(tokenizer, world):
    from reverie.world.templates import QUESTIONS_WHICH

    args = (0, 3, 4, 1024, 0.45, 0.3, 0.15)
    plain = batch(Segmenter(tokenizer, world), *args)
    assert all(torch.equal(a, b) for a, b in zip(plain, batch(Segmenter(tokenizer, world, p_which=0.0), *args), strict=True))
    ids, _ = batch(Segmenter(tokenizer, world, 0.0, 1.0), *args)
    text = " ".join(tokenizer.decode([t for t in row.tolist() if t != tokenizer.pad_token_id]) for row in ids)
    asked = [line.split("Question: ", 1)[1] for line in text.split("\n") if "Question: " in line]
    forms = [template_pattern(t) for a in QUESTIONS_WHICH for t in QUESTIONS_WHICH[a]]
    assert asked and all(any(f.match(q) for f in forms) for q in asked)


def test_base_words_appear_only_when_asked_for(tokenizer, world):
    from reverie.world.templates import QUESTIONS_BASE_WORDS

    args = (0, 3, 4, 1024, 0.45, 0.3, 0.15)
    plain = batch(Segmenter(tokenizer, world), *args)
    assert all(torch.equal(a, b) for a, b in zip(plain, batch(Segmenter(tokenizer, world, p_words=0.0), *args), strict=True))
    ids, _ = batch(Segmenter(tokenizer, world, p_words=1.0), *args)
    text = " ".join(tokenizer.decode([t for t in row.tolist() if t != tokenizer.pad_token_id]) for row in ids)
    asked = [line.split("Question: ", 1)[1] for line in text.split("\n") if "Question: " in line]
    forms = [template_pattern(t) for t in QUESTIONS_BASE_WORDS["university"]]
    school = [q for q in asked if "school" in q]
    assert school and all(any(f.match(q) for f in forms) for q in school)
    assert len(school) < len(asked)  # only the bank's attributes are asked this way


def test_a_needle_stage_starts_from_the_shipped_model(tmp_path):
    # A new run from the shipped weights and tokenizer, on the non-CPU code path (cpu:0).
    import json

    from reverie.base import train
    from reverie.base.model import DEFAULT_MODEL_DIR

    out = tmp_path / "run"
    train.setup(out=str(out), steps=1, rows=2, needle_from=0, p_unknown=0.2, init=str(DEFAULT_MODEL_DIR), device="cpu:0")
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 2.0  # trained weights, not a fresh initialisation (about 8.3)
    assert log[-1]["closed"] > 0.9 and "needle_ctx" in log[-1] and 0 <= log[-1]["abstain"] <= 1
    assert (out / "tokenizer/tokenizer.json").read_text() == (DEFAULT_MODEL_DIR / "tokenizer.json").read_text()
    state = json.loads((out / "ckpt/state.json").read_text())
    assert state["recipe"]["needle_from"] == 0
    # Exported as a candidate model folder; a second export keeps the folders beside it.
    dest = tmp_path / "model"
    train.setup(out=str(out), steps=1, rows=2, needle_from=0, p_unknown=0.2, init=str(DEFAULT_MODEL_DIR), export_to=str(dest))
    (dest / "hypernet").mkdir()
    (dest / "hypernet" / "kept").write_text("x")
    train.setup(out=str(out), steps=1, rows=2, needle_from=0, p_unknown=0.2, init=str(DEFAULT_MODEL_DIR), export_to=str(dest))
    assert (dest / "hypernet" / "kept").read_text() == "x" and (dest / "model.safetensors").is_file()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert f"--needle-from 0 --p-needle 0.15 --lr-needle 0.0003 --p-unknown 0.2 --export-to {dest}" in manifest["command"]
    shipped = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    assert manifest["stages"][:-1] == shipped.get("stages", [shipped["command"]])  # how its start was made
    assert manifest["stages"][-1] == manifest["command"]
