"""Training data of the embedded base model: the needle stage's segments."""

import random

import torch

from reverie.base.data import IGNORE, Segmenter, batch
from reverie.world.templates import NEEDLE_QUESTION


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
