import json
import os
import signal
import subprocess
import sys
import time

import pytest

from reverie.learner import Learner
from reverie.memory import Memory
from reverie.sleep.buffer import Buffer
from reverie.sleep.cycle import probe_index
from reverie.world import World
from reverie.world.stream import StreamConfig, make_stream


@pytest.fixture(scope="module")
def stream():
    return make_stream(World(), StreamConfig(days=4, people_per_day=2, update_every=1, first_update_day=1), seed=0)


def test_read_is_answerable_at_once_and_sleep_consolidates(tmp_path, stream):
    learner = Learner.load(memory=tmp_path / "m")
    learner._guard = None  # guard cost is not what this test is about
    day = stream.days[0]
    ids = [learner.read(o.text) for o in day.observations]
    p = World().held_out[0]
    assert learner.ask(f"In which city does {p.name} work?") == p.attrs["employer_city"]  # from the working context
    rep = learner.sleep(replay_steps=3)
    assert rep["consolidated"] == 2 and len(learner.buffer) == 0
    adds = [e for e in learner.memory.ledger() if e.get("event") == "add"]
    assert {e.get("buffer_id") for e in adds} >= set(ids)
    assert any(e.get("kind") == "replay" for e in adds)
    obs = [e for e in adds if e.get("kind") == "observation"]
    assert all(len(e["probes"]) >= 20 for e in obs)  # every stated attribute, every template
    learner.close()


def test_an_update_supersedes_the_older_fact(tmp_path, stream):
    learner = Learner.load(memory=tmp_path / "m")
    learner._guard = None
    for day in stream.days[:3]:
        for o in day.observations:
            learner.read(o.text)
        learner.sleep(replay_steps=3)
    u = stream.updates[0]
    links = [lk for e in learner.memory.ledger() for lk in e.get("supersedes", [])]
    assert any(lk["key"] == f"{u.person}|{u.attribute}" and lk["new"] == u.new for lk in links), links
    active = probe_index(learner.memory)[f"{u.person}|{u.attribute}"]
    assert {p.answer for _, p in active} == {u.new}
    learner.close()


def test_a_duplicate_is_discarded_and_noted(tmp_path, stream):
    learner = Learner.load(memory=tmp_path / "m")
    learner._guard = None
    text = stream.days[0].observations[0].text
    learner.read(text)
    learner.read(text)
    rep = learner.sleep(replay=False, budget=5)
    assert rep["consolidated"] == 1 and rep["discarded"] == 1
    assert [e["reason"] for e in learner.memory.ledger() if e.get("event") == "discarded"] == ["duplicate"]
    learner.close()


LIVER = """
import sys
sys.path.insert(0, {root!r} + "/src")
from reverie.learner import Learner
from reverie.world import World
from reverie.world.stream import make_stream, StreamConfig
s = make_stream(World(), StreamConfig(days=40, people_per_day=2), seed=0)
learner = Learner.load(memory={path!r}, strategy={strategy!r}, injector={injector!r})
learner._guard = None
for day in s.days:
    for o in day.observations:
        print(learner.read(o.text), flush=True)
    learner.sleep(replay_steps=2)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "injector"), [("add", "hyper"), ("bank", "hyper"), ("bank", "learn")])
def test_killed_during_read_or_sleep_loses_nothing(tmp_path, strategy, injector):
    """Merged memories (replay, transfer) and bank memories (repair) alike, and a bank that
    learns at sleep by gradient steps (a real model's path, on the small embedded model)."""
    path = str(tmp_path / "m")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    acked: set[str] = set()
    for k in range(8 if strategy == "add" else 5):
        p = subprocess.Popen([sys.executable, "-c", LIVER.format(root=root, path=path, strategy=strategy, injector=injector)], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        # Past the imports (the first acknowledged read, however slow a loaded machine makes
        # them), then at a different point of a read or a sleep.
        first = p.stdout.readline()
        time.sleep(1.0 + 0.37 * k)
        p.send_signal(signal.SIGKILL)
        acked |= {line.strip() for line in [first, *p.stdout.read().splitlines()] if line.strip()}
        p.wait()
        learner = Learner.load(memory=path)  # reopens: checksums verified, leftovers swept, buffer recovered
        mem = learner.memory
        assert isinstance(mem, Memory) and len(mem.ledger()) == mem.state["ledger_lines"]
        taken = {e["buffer_id"] for e in mem.ledger() if "buffer_id" in e}
        pending = {o.id for o in Buffer(mem.path / "buffer").items()}
        assert acked <= taken | pending, acked - taken - pending
        assert not taken & pending  # nothing consumed twice
        state = json.loads((tmp_path / "m" / "memory.json").read_text())
        assert state["total"] == mem.state["total"]
        learner.close()
    assert acked


def test_transfer_moves_last_nights_items_into_replay(tmp_path, stream):
    learner = Learner.load(memory=tmp_path / "m")
    learner._guard = None
    first = []
    for day in stream.days[:2]:
        for o in day.observations:
            learner.read(o.text)
        rep = learner.sleep(replay_steps=2)
        first = first or rep["items"]
    mem = learner.memory
    assert not set(first) & set(mem.items)  # out of the weights...
    assert {o for _, ps in probe_index(mem).items() for o, _ in ps} >= set(first)  # ...their facts still active
    replays = [e for e in mem.ledger() if e.get("kind") == "replay"]
    assert set(first) <= set(replays[-1]["covered"])
    assert rep["transferred"] == len(first)
    learner.close()


def test_replay_draws_the_same_rows_whatever_ids_the_items_get(tmp_path, stream, monkeypatch):
    """Item ids are random (uuid4); a seed's replay must not depend on how they sort."""
    import itertools
    import uuid

    from reverie.sleep import cycle

    drawn: list[list] = []
    real = cycle.replay_rows
    monkeypatch.setattr(cycle, "replay_rows", lambda *a, **k: drawn.append(rows := real(*a, **k)) or rows)
    runs = []
    for name, step in (("rising", 1), ("falling", -1)):
        count = itertools.count(1 << 20, step)  # ids that sort in the order given, then against it
        monkeypatch.setattr(uuid, "uuid4", lambda c=count: uuid.UUID(int=next(c) << 80))
        drawn.clear()
        learner = Learner.load(memory=tmp_path / name)
        learner._guard = None
        for day in stream.days[:3]:
            for o in day.observations:
                learner.read(o.text)
            learner.sleep(replay_steps=1)
        learner.close()
        runs.append(list(drawn))
    assert len(runs[0]) >= 2 and all(runs[0])  # replay ran on several nights
    assert runs[0] == runs[1]
