import random
import re

from reverie.world import ATTRIBUTES, World, WorldConfig
from reverie.world import templates as T
from tests.conftest import TINY_WORLD


def dump(w: World, seed: int) -> str:
    r = random.Random(seed)
    parts = []
    for p in w.base + w.held_out:
        parts.append(repr(p))
        parts.append(w.biography(p, r))
        parts += [q.question + "|" + q.answer for q in w.questions(p) + w.questions(p, heldout=True)]
    it = w.skill_people(seed)
    parts += [repr(next(it)) for _ in range(10)]
    return "\n".join(parts)


def test_same_seed_byte_identical():
    assert dump(World(TINY_WORLD), 1).encode() == dump(World(TINY_WORLD), 1).encode()


def test_other_seed_differs():
    other = WorldConfig(**{**TINY_WORLD.__dict__, "seed": 1})
    assert dump(World(TINY_WORLD), 1) != dump(World(other), 1)


def test_populations_disjoint(world):
    base = {p.name for p in world.base}
    held = {p.name for p in world.held_out}
    assert not base & held
    it = world.skill_people(3)
    skill = {next(it).name for _ in range(200)}
    assert not skill & (base | held)


def test_phrasings_and_templates():
    for a in ATTRIBUTES:
        assert len(T.BIO[a]) >= 10
        assert len(T.QUESTIONS_TRAIN[a]) >= 4
        assert len(T.QUESTIONS_HELDOUT[a]) >= 2
        assert not set(T.QUESTIONS_TRAIN[a]) & set(T.QUESTIONS_HELDOUT[a])


def test_paraphrases_never_repeat_a_held_out_form():
    """The base model's paraphrases and "Which <noun>" questions widen the question forms
    without handing it the held-out ones: no held-out template, no "Which <noun> is" frame,
    no "school", no "which day"."""
    held = {t for a in ATTRIBUTES for t in T.QUESTIONS_HELDOUT[a]}
    for bank in (T.QUESTIONS_PARAPHRASE, T.QUESTIONS_WHICH):
        for a in ATTRIBUTES:
            para = bank[a]
            assert len(para) >= 4 and len(set(para)) == len(para)
            assert not set(para) & (held | set(T.QUESTIONS_TRAIN[a]))
            for t in para:
                low = t.lower()
                assert "{name}" in t and "school" not in low and "which day" not in low
                assert not re.match(r"which \w+ is ", low), t
    assert all(t.startswith("Which ") for a in ATTRIBUTES for t in T.QUESTIONS_WHICH[a])


def test_base_words_teach_a_word_without_a_held_out_template():
    """The base-only bank ("school") repeats no held-out template or its verb, and no other
    bank uses its words, so the hypernetwork's question forms never contain them."""
    held = {t for a in ATTRIBUTES for t in T.QUESTIONS_HELDOUT[a]}
    for a, bank in T.QUESTIONS_BASE_WORDS.items():
        assert a in ATTRIBUTES and len(bank) >= 4 and len(set(bank)) == len(bank)
        assert not set(bank) & held
        for t in bank:
            low = t.lower()
            assert "{name}" in t and "school" in low and "go to" not in low and "went to" not in low
            assert not re.match(r"which \w+ is ", low), t
    others = (T.QUESTIONS_TRAIN, T.QUESTIONS_PARAPHRASE, T.QUESTIONS_WHICH)
    assert not any("school" in t.lower() for bank in others for a in ATTRIBUTES for t in bank[a])


def test_biography_states_every_attribute(world):
    r = random.Random(0)
    for p in world.base:
        bio = world.biography(p, r)
        assert bio.startswith(p.name) or p.name in bio.split(".")[0]
        for v in p.attrs.values():
            assert v in bio


def test_questions_cover_attributes(world):
    p = world.held_out[0]
    qs = world.questions(p)
    assert {q.attribute for q in qs} == set(ATTRIBUTES)
    assert all(p.name in q.question and q.answer == p.attrs[q.attribute] for q in qs)
    assert all(q.heldout_template for q in world.questions(p, heldout=True))


def test_default_world_sizes():
    w = World()
    assert len(w.base) >= 500
    assert len(w.held_out) >= 1000
