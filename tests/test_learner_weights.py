"""One owner of the model's weights (``reverie.memory.Weights``) on the embedded model: an
adapter injected with ``Learner.inject`` stays in the weights through every memory write
(consolidate, forget, rollback), and ``remove`` takes it out exactly."""

import random

import torch

from reverie.hypernet.lora import target_module
from reverie.learner import Learner
from reverie.world import World


def _weights(learner: Learner) -> dict[tuple[str, int], torch.Tensor]:
    return {(t, i): target_module(learner.bm.model, i, t).weight.detach().clone()
            for t in learner.injector.target_names() for i in range(learner.bm.n_layers)}


def test_an_injected_biography_survives_every_memory_write_and_removes_exactly(tmp_path):
    world = World()
    first, second = world.held_out[0], world.held_out[1]
    r = random.Random(0)
    bio1, bio2 = world.biography(first, r), world.biography(second, r)
    questions = [q.question for q in world.questions(first)]
    learner = Learner.load(memory=tmp_path / "mem")  # with the interference guard

    def answers() -> list[str]:
        return [learner.ask(q) for q in questions]

    base, w0 = answers(), _weights(learner)
    learner.memory.snapshot("empty")  # type: ignore[union-attr]
    adapter = learner.inject(bio1)
    injected, w_injected = answers(), _weights(learner)
    assert sum(a != b for a, b in zip(base, injected, strict=True)) >= len(questions) // 2  # it knows the biography now

    # This second biography does not disturb the first's answers once merged (others do a
    # little: interference the guard bounds on other questions).
    ids = learner.consolidate([bio2])  # the guard measures the memory alone: accepted (perhaps scaled)
    assert ids[0] is not None
    assert answers() == injected
    assert learner.forget(ids[0])
    assert answers() == injected
    assert learner.consolidate([bio2])[0] is not None
    learner.rollback("empty")
    assert answers() == injected
    assert learner.adapters == [adapter]
    for k, w in _weights(learner).items():  # the memory empty again: the very weights of the injection
        assert torch.equal(w, w_injected[k])

    learner.remove(adapter)
    assert learner.adapters == []
    mem = learner.memory
    assert mem is not None and not mem.items
    for (t, i), w in _weights(learner).items():
        # the memory-only state, computed as a merge computes it; here the empty memory: W0
        assert torch.equal(w, (w0[(t, i)].float() + mem.total[t][i]).to(w.dtype))
        assert torch.equal(w, w0[(t, i)])
    assert answers() == base
    learner.close()

