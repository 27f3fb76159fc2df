"""Knowledge updates in a bank that learns at sleep: a short text about a stored item revises it."""

from __future__ import annotations

import random

from reverie.learner import Learner
from reverie.memory.route import TextRouter, key_phrases
from reverie.sleep.probe import Probe
from reverie.sleep.revise import Revision, merged, subject_of
from reverie.world import World


def test_an_update_is_learned_into_the_item_it_updates(tmp_path) -> None:
    w = World()
    p, other = w.held_out[3], w.held_out[5]
    assert p.attrs["employer"] != other.attrs["employer"]
    learner = Learner.load(memory=tmp_path / "m", strategy="bank", injector="learn")
    learner.read(w.biography(p, random.Random(0)))
    learner.sleep()
    (first,) = learner.memory.items
    born = f"In which city was {p.name} born?"
    assert learner.ask(born, working=False) == p.attrs["birth_city"]
    learner.read(f"{p.name} works for {other.attrs['employer']}.")
    rep = learner.sleep()
    assert rep["revised"] == 1
    (item,) = learner.memory.items  # one item answers for the person: the revision
    entry = learner.memory.item(item)
    assert entry["revises"] == first and item != first
    assert [e["reason"] for e in learner.memory.ledger() if e.get("event") == "forget"] == ["revised"]
    assert learner.ask(f"Who employs {p.name}?", working=False) == other.attrs["employer"]
    assert learner.ask(born, working=False) == p.attrs["birth_city"]  # the rest is kept
    learner.close()


def test_an_update_keeps_what_it_does_not_change() -> None:
    old = [Probe("What do you know about Sigrún Þórsdóttir?", "She designs conveyors at Marel.", "about|sigrún þórsdóttir"),
           Probe("Sigrún Þórsdóttir was born when?", "Sigrún Þórsdóttir was born on 4 March 1988.", "fact|a|0|1"),
           Probe("Complete: Sigrún joined ...", "Marel, at its headquarters.", "fact|a|1|2")]
    rev = Revision("x", "Sigrún Þórsdóttir", old, ["sigrún þórsdóttir", "marel"])
    new = [Probe("What do you know about Sigrún Þórsdóttir?", "She left Marel for Össur.", "about|sigrún þórsdóttir")]
    got = merged(rev, "In 2024 Sigrún left Marel and joined Össur as head of design.", new)
    assert [p.answer for p in got] == ["Sigrún Þórsdóttir was born on 4 March 1988.", "She left Marel for Össur."]
    assert subject_of({"probes": [[p.question, p.answer, p.key] for p in old]}) == "Sigrún Þórsdóttir"


def test_a_text_overlaps_the_item_that_names_what_it_names() -> None:
    r = TextRouter()
    r.add("a", key_phrases("Sigrún Þórsdóttir works at Marel in Garðabær."))
    r.add("b", key_phrases("Priya Raman set up Bluefin in March."))
    assert r.overlap("In 2024 Sigrún left Marel and joined Össur.") == {"a": 2}
    assert r.overlap("I moved to Paris.") == {}


def test_a_sleep_killed_between_a_revisions_commits_is_finished_by_the_next(tmp_path) -> None:
    import torch

    from reverie.hypernet.adapter import Adapter
    from reverie.memory import Memory
    from reverie.sleep.revise import finish

    def ad(seed: int) -> Adapter:
        g = torch.Generator().manual_seed(seed)
        return Adapter({"mlp.down_proj": (torch.randn(2, 3, 64, generator=g), torch.randn(2, 32, 3, generator=g))}, 1.0)

    with Memory(tmp_path / "m", "fp", {"mlp.down_proj": (2, 32, 64)}, strategy="bank") as m:
        (old,) = m.add([ad(0)], ["a"])
        (new,) = m.add([ad(1)], ["b"], extra=[{"revises": old}])  # the revision's commit; killed before the removal
        assert finish(m) == [old] and m.items == [new]
        assert finish(m) == []  # nothing left to finish
