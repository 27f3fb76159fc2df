"""The interference guard scores its probes in the model's own prompt format: the prompts
the model answered when the guard took its reference answers."""

from __future__ import annotations

import copy

from reverie.base.model import IGNORE, BaseModel
from reverie.base.prompt import ChatFormat
from reverie.memory.guard import Guard, GuardConfig

TEMPLATE = ("{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_a_chat_models_guard_scores_its_probes_in_the_chat_format(tiny_llama_dir, world) -> None:
    base = BaseModel.load(tiny_llama_dir)
    tok = copy.deepcopy(base.tokenizer)
    tok.chat_template = TEMPLATE
    bm = BaseModel(base.model, tok)
    assert isinstance(bm.format, ChatFormat)
    # Closed-book probes only: a document overflows the tiny model's 128 positions.
    guard = Guard(bm, world, GuardConfig(n_closed=3, n_context=0))
    answers = bm.answer_batch([bm.prompt(q) for q in guard.questions[:3]], None)
    for row in range(len(guard.ids)):
        n = int(guard.mask[row].sum())
        text = tok.decode(guard.ids[row, :n].tolist())
        assert text.replace(" ", "").startswith("<|user|>")  # the chat turn, not "Context: ..." / "Question: ..."
        scored = guard.lab[row][guard.lab[row] != IGNORE].tolist()
        assert scored[-1] == tok.eos_token_id  # the assistant's turn ends at end-of-sequence
        assert tok.decode(scored[:-1]).replace(" ", "") == answers[row].replace(" ", "")
    ref = guard.reference()
    m, _ = guard.measure(ref)
    assert m["changed"] == 0.0 and m["kl"] < 1e-6
