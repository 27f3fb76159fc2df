"""The adapter bank's routing: document keys, the key router, and a bank memory in use."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reverie.hypernet.adapter import Adapter
from reverie.hypernet.qa import ask_injected
from reverie.learner import Learner
from reverie.memory.route import KeyRouter, chunk_keys, key_phrases, phrases
from reverie.world import World

BIO = ("Charles Miles is a native of Thomasstad. Charles was welcomed into the world on 28 February 1984. "
       "He works in Lake Amy. He graduated from East Monica State University. Charles Miles draws his salary "
       "from Smith Ltd. Charles Miles's field of study was Mechanical Engineering.")


def test_key_phrases_are_the_capitalised_runs():
    key = key_phrases(BIO)
    assert {"charles miles", "east monica state university", "lake amy", "smith ltd", "thomasstad"} <= set(key)
    assert not any(w in k.split() for k in key for w in ("works", "native", "salary"))
    assert ("what",) in [p for p, initial in phrases("What is it?") if initial]


def test_a_chunk_is_keyed_by_whom_its_sentences_are_about():
    chunks = ["Allison Reyes was born on 26 January 1988. Allison Reyes works for Smith Ltd.",
              "Allison spent her early years in Lake Amy. She studied Classics.",  # names her by first name only
              "She works in Port Marie.",  # names nobody: about the subject in force
              "Ada Wood was born in Lake Amy. She works in Port Marie."]  # opens with a new name
    keys = chunk_keys(chunks)
    assert keys[0] == key_phrases(chunks[0])
    assert "allison reyes" in keys[1] and "allison reyes" in keys[2]
    assert "allison reyes" not in keys[3]
    r = KeyRouter()
    for j, k in enumerate(keys):
        r.add(str(j), k, group="doc")
    assert set(r.routes("Where does Allison Reyes work?")) == {"0", "1", "2"}
    assert r.routes("Where was Ada Wood born?") == ["3"]


def test_the_router_names_the_item_and_abstains_on_strangers():
    r = KeyRouter()
    r.add("a", key_phrases(BIO))
    r.add("b", key_phrases("Ada Wood was born in Lake Amy. Ada Wood works for Brown Group."))
    assert r.route("What is the birth city of Charles Miles?") == "a"
    assert r.route("Charles Miles works in which city?") == "a"
    assert r.route("Who does Ada Wood work for?") == "b"
    # Both words of "Charles Smith" are in item a, but not as one phrase: not about it.
    assert r.route("Where was Charles Smith born?") is None
    assert r.route("where does charles miles work?") is None  # no capitalised phrase to go on
    assert r.route("") is None


def test_a_question_that_names_nothing_goes_by_probe_questions_or_nowhere():
    r = KeyRouter()
    r.add("bio", key_phrases(BIO), questions=["Where was Charles Miles born?"])
    r.add("hay", ["local", "farmers"], questions=["What is the special magic number?"])
    r.add("bare", ["rain"])  # no probes: never reached without a name
    assert r.route("What is the special magic number?") == "hay"
    assert r.route("What is the magic number?") == "hay"  # a near copy
    assert r.route("What is the weather like?") is None
    assert r.route("Where was Charles Miles born?") == "bio"
    r.add("hay2", ["rain"], questions=["What is the special magic number?"])
    assert r.route("What is the special magic number?") == "hay2"  # the newest wins a tie
    r.remove("hay2")
    assert r.route("What is the special magic number?") == "hay"


def test_the_newest_item_about_a_name_wins_and_removal_works():
    r = KeyRouter()
    r.add("old", key_phrases(BIO))
    r.add("new", key_phrases(BIO.replace("Smith Ltd", "Brown Group")))
    assert r.route("Who employs Charles Miles?") == "new"
    r.remove("new")
    assert r.route("Who employs Charles Miles?") == "old"
    r.remove("old")
    assert r.route("Who employs Charles Miles?") is None


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.text(max_size=120))
def test_routing_never_fails_on_any_text(doc, question):
    r = KeyRouter()
    r.add("x", key_phrases(doc))
    assert r.route(question) in (None, "x")


def test_a_bank_memory_routes_each_question_to_its_own_adapter(tmp_path):
    world = World()
    people = world.held_out[:3]
    docs = [world.biography(p, random.Random(i)) for i, p in enumerate(people)]
    learner = Learner.load(memory=tmp_path / "m", strategy="bank")
    learner._guard = None
    ids = learner.consolidate(docs)
    assert all(ids)
    q = world.question(people[1], "birth_city", random.Random(0))
    assert learner.route(q.question) == ids[1]
    ad = Adapter(learner.memory.factors(ids[1]), 1.0)
    assert learner.ask(q.question) == ask_injected(learner.bm, [q], {q.person: ad})[0]
    stranger = world.question(world.base[0], "employer", random.Random(0))
    assert learner.route(stranger.question) is None
    assert learner.forget(ids[1]) and learner.route(q.question) is None
    learner.close()


def _slept_bank(tmp_path, person: int = 0):
    """A bank memory that has read one held-out biography and slept: (world, person, learner, report)."""
    world = World()
    p = world.held_out[person]
    learner = Learner.load(memory=tmp_path / "m", strategy="bank")
    learner._guard = None
    learner.read(world.biography(p, random.Random(0)))
    return world, p, learner, learner.sleep()


def _a_fact_the_hypernetwork_misses(world):
    """(index of a held-out person, a question about them) that the shipped hypernetwork's
    adapter of their biography answers wrong: the first such among the held-out people."""
    learner = Learner.load()
    for i, p in enumerate(world.held_out[:100]):
        ad = learner.injector.inject(world.biography(p, random.Random(0)))
        qs = [world.question(p, a, random.Random(0)) for a in p.attrs]
        for q, a in zip(qs, ask_injected(learner.bm, qs, {p.name: ad}), strict=True):
            if a != q.answer:
                return i, q
    raise AssertionError("the hypernetwork answered every fact of 100 people")


def test_sleep_on_a_bank_memory_stores_items_without_replay(tmp_path):
    world, p, learner, rep = _slept_bank(tmp_path)
    assert rep["consolidated"] == 1 and rep["replay_rows"] == 0 and "replay_item" not in rep
    assert learner.route(world.question(p, "employer", random.Random(0)).question) == rep["items"][0]
    learner.close()


def test_items_about_one_name_are_told_apart_by_what_they_answer():
    r = KeyRouter()
    r.add("bio", key_phrases(BIO), questions=["Where was Charles Miles born?", "What did Charles Miles study?"])
    r.add("update", key_phrases("Charles Miles now works for Brown Group in Port Ann."),
          questions=["Who does Charles Miles work for?", "In which city does Charles Miles work?"])
    assert r.route("Where was Charles Miles born?") == "bio"
    assert r.route("Who does Charles Miles work for?") == "update"
    assert r.route("Which city is Charles Miles's workplace in?") == "update"


def test_sleep_repairs_what_the_hypernetwork_missed(tmp_path):
    """Sleep on a bank memory checks each item on its own probes and fits a correction for
    the facts its adapter gets wrong (the shipped hypernetwork misses about 1 in 20)."""
    i, q = _a_fact_the_hypernetwork_misses(World())
    world, p, learner, rep = _slept_bank(tmp_path, person=i)
    entry = learner.memory.item(rep["items"][0])
    assert entry["repair"]["failed"] >= 1 and entry["repair"]["failed_after"] < entry["repair"]["failed"]
    assert learner.ask(q.question, working=False) == q.answer
    learner.close()


@pytest.mark.parametrize("way", ["consolidate", "sleep"])
def test_a_long_text_goes_into_a_bank_as_chunk_items_answered_together(tmp_path, way):
    world = World()
    people = world.held_out[10:22]
    text = " ".join(world.biography(p, random.Random(i)) for i, p in enumerate(people))
    learner = Learner.load(memory=tmp_path / "m", strategy="bank")
    learner._guard = None
    assert learner.injector.n_tokens(text) > learner.bm.max_length  # longer than the window
    if way == "consolidate":
        [first] = learner.consolidate([text])
    else:
        learner.read(text)
        first = learner.sleep(repair=False)["items"][0]
    mem = learner.memory
    chunks = [e for e in mem.ledger() if e.get("event") == "add"]
    # Cut where the subject changes: no chunk holds two people, and each is keyed by its own.
    assert len(chunks) >= len(people) and first == chunks[0]["id"]
    for e in chunks:
        assert sum(p.name.lower() in e["key"] for p in people) == 1
    assert len({e["document_sha256"] for e in chunks}) == 1 and [e["chunk"] for e in chunks] == list(range(len(chunks)))
    hits = 0
    for p in people:
        routes = learner.routes(f"Where was {p.name} born?")
        assert 1 <= len(routes) <= 4
        hits += learner.ask(f"Where was {p.name} born?", working=False) == p.attrs["birth_city"]
    assert hits >= len(people) // 2  # bench long measures this properly; here: it works end to end
    learner.close()


@pytest.mark.slow
def test_a_magic_number_deep_in_a_long_haystack_is_recalled_after_sleep(tmp_path):
    """The needle past the window, as a user stores it: read, sleep (chunks, each probed and
    repaired), then asked with no context; the model is the base model again once closed."""
    from reverie.world.templates import NEEDLE, NEEDLE_QUESTION

    hay = World().haystack(80, random.Random(3))  # about 4 windows
    text = " ".join(hay[:11] + [NEEDLE.format(value="7305182")] + hay[11:])
    learner = Learner.load(memory=tmp_path / "m", strategy="bank")
    assert learner.injector.n_tokens(text) > 3 * learner.bm.max_length
    before = learner.ask(NEEDLE_QUESTION, working=False)
    learner.read(text)
    rep = learner.sleep()
    assert rep["consolidated"] >= 4
    [item] = learner.routes(NEEDLE_QUESTION)
    assert "7305182" in learner.memory.item(item)["probes"][0][1]
    assert learner.ask(NEEDLE_QUESTION, working=False) == "7305182"
    learner.close()
    assert learner.bm.answer(NEEDLE_QUESTION) == before  # detached: the base model's weights


def test_a_text_that_fits_the_window_but_not_beside_a_question_is_chunked_into_a_bank():
    from reverie.memory.route import PROBE_ROOM

    learner = Learner.load()
    inj = learner.injector
    hay = World().haystack(40, random.Random(0))
    n = max(k for k in range(len(hay)) if inj.n_tokens(" ".join(hay[:k])) <= inj.limit)
    text = " ".join(hay[:n])
    assert inj.n_tokens(text) > inj.limit - PROBE_ROOM and len(inj.chunks(text)) == 1
    assert len(learner.bank_pieces(text)) > 1
    short = " ".join(hay[:3])
    assert learner.bank_pieces(short) == [(short, {})]


def test_the_guard_measures_a_bank_item_only_when_a_probe_routes_to_it(tmp_path):
    from reverie.memory import _routed_probes

    learner = Learner.load(memory=tmp_path / "m", strategy="bank")  # guard on
    world = World()
    [item] = learner.consolidate([world.biography(world.held_out[30], random.Random(0))])
    # A held-out person is named by none of the guard's probes: stored without measuring.
    assert learner.memory.item(item)["guard"] == {"decision": "accepted", "routed_probes": 0}
    g = learner._guard
    assert _routed_probes(g, key_phrases(g.questions[0])) >= 1
    learner.close()


def test_the_text_router_leaves_a_question_that_names_an_item_only_in_passing():
    from reverie.memory.route import TextRouter

    text = ("The Apollo program was run by NASA from 1961 to 1972. It was funded by the United States "
            "government and landed twelve astronauts on the Moon.")
    probes = ["What do you know about Apollo program?", "The Apollo program was run by what from 1961 to 1972?",
              "It was funded by the United States government and landed how many astronauts on the Moon?"]
    for names, passing in ((["apollo program", "nasa"], None), (None, "a")):
        r = TextRouter()
        r.add("a", key_phrases(text), questions=probes, names=names)
        assert r.route("Who ran the Apollo program?") == "a"  # its main name
        assert r.route("How many astronauts did the United States land on the Moon?") == "a"  # what it says
        # Named in passing, nothing it says: no item (without its main names known, the item).
        assert r.route("What currency is used in the United States?") == passing
