import random

from reverie.base.model import BaseModel
from reverie.sleep.buffer import Buffer, fit_context
from reverie.sleep.probe import WorldProber
from reverie.world import World
from reverie.world.generator import Person
from reverie.world.stream import StreamConfig, make_stream


def test_world_prober_finds_every_stated_attribute():
    w = World()
    s = make_stream(w, StreamConfig(days=8, people_per_day=3, repeats_per_day=1, chatter_per_day=1), seed=3)
    pr = WorldProber()
    for d in s.days:
        for o in d.observations:
            keys = {k for _, k in pr.questions(o.text)}
            assert keys == {f"{o.person}|{a}" for a in o.attrs}, o.text


def test_prober_asks_only_what_a_partial_text_states():
    p = World().held_out[0]
    text = World().biography(Person(p.name, p.gender, {"employer": "Acme"}), random.Random(0))
    qs = WorldProber().questions(text)
    assert qs and all(k == f"{p.name}|employer" for _, k in qs)
    assert WorldProber().questions("The weather in the valley changed slowly over the afternoon.") == []


def test_prober_asks_for_a_magic_number_wherever_it_stands():
    from reverie.sleep.probe import NEEDLE_KEY
    from reverie.world.templates import NEEDLE, NEEDLE_QUESTION

    hay = World().haystack(6, random.Random(0))
    for at in (0, 3, 6):
        text = " ".join(hay[:at] + [NEEDLE.format(value="4821930")] + hay[at:])
        assert WorldProber().questions(text) == [(NEEDLE_QUESTION, NEEDLE_KEY)]
    assert WorldProber().questions(" ".join(hay)) == []


def test_stream_questions_are_about_earlier_days_with_values_of_that_day():
    w = World()
    s = make_stream(w, StreamConfig(days=10), seed=1)
    read: set[str] = set()
    truth: dict[str, dict] = {}
    for d in s.days:
        for q in d.questions:
            assert q.person in read and truth[q.person][q.attribute] == q.answer
        for o in d.observations:
            read.add(o.person)
        for u in s.updates:
            if u.day == d.index:
                truth[u.person] = {**truth[u.person], u.attribute: u.new}
        for o in d.observations:
            if o.kind == "bio":
                truth[o.person] = dict(w.held_out[[p.name for p in w.held_out].index(o.person)].attrs)
    assert s.updates and {a for _, a in [(u.person, u.attribute) for u in s.updates]} == {"employer", "employer_city"}
    assert len(s.final_questions(w)) >= len(s.people) * 3


def test_buffer_persists_drops_and_sweeps(tmp_path):
    b = Buffer(tmp_path / "buf")
    ids = [b.add(t).id for t in ("one", "two", "three")]
    (tmp_path / "buf" / ".00000009-x.json.123.tmp").write_text("half")
    b2 = Buffer(tmp_path / "buf", consumed={ids[0]})
    assert [o.text for o in b2.items()] == ["two", "three"]
    assert not any(p.name.startswith(".") for p in (tmp_path / "buf").iterdir())
    assert [o.text for o in Buffer(tmp_path / "buf", {ids[1]}, readonly=True).items()] == ["three"]
    b2.drop([ids[2]])
    assert [o.text for o in Buffer(tmp_path / "buf").items()] == ["two"]


def test_working_context_keeps_the_newest_that_fit():
    bm = BaseModel.load()
    w = World()
    r = random.Random(0)
    bios = [w.biography(p, r) for p in w.held_out[:6]]
    ctx = fit_context(bm, bios, "Who is X?")  # no text shares a word: the newest that fit
    assert ctx is not None and ctx.endswith(bios[-1]) and bios[0] not in ctx
    assert len(bm.encode(bm.prompt("Who is X?", ctx))) <= bm.max_length - 24
    p = w.held_out[1]
    assert fit_context(bm, bios, f"Who does {p.name} work for?") == bios[1]  # the one about the person asked
    assert fit_context(bm, [], "q") is None
    assert fit_context(bm, ["word " * 400], "q") is None  # too long for the window: not in context
