"""Training sequences for the embedded base model.

Three kinds of segment, each starting with BOS:
  * ``bio``: a base-population biography, loss on every token (stores the facts);
  * ``closed``: closed-book QA about base people, loss on answers only;
  * ``context``: a fresh skill person's biography in context, then several questions
    about it, loss on answers only (teaches reading);
  * ``needle`` (the needle stage only): haystack text with one "special magic number"
    sentence at a random depth in context, then the question for it, loss on the answer;
  * ``unknown`` (the needle stage, when asked for): closed-book questions mixing base people
    (their facts) and fresh people never read about (answered "I don't know").
Segments are packed greedily into fixed-length rows. Labels align with input ids
(transformers shifts them), with -100 where no loss is taken.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch

from reverie.base.model import IGNORE
from reverie.base.prompt import answer_text, closed_prompt
from reverie.world import ATTRIBUTES, QA, Person, World
from reverie.world.generator import FORMS, rng
from reverie.world.templates import NEEDLE_QUESTION, UNKNOWN_ANSWER

Segment = tuple[list[int], list[int]]


class Segmenter:
    """Turns world items into (ids, labels) segments for one tokenizer."""

    def __init__(self, tokenizer, world: World, p_paraphrase: float = 0.0, p_which: float = 0.0,
                 p_words: float = 0.0):
        self.tok = tokenizer
        self.world = world
        self.bos = tokenizer.bos_token_id
        self.p_paraphrase = p_paraphrase
        """Share of questions drawn from ``templates.QUESTIONS_PARAPHRASE`` (base training)."""
        self.p_which = p_which
        """Share of questions drawn from ``templates.QUESTIONS_WHICH`` (drawn first)."""
        self.p_words = p_words
        """Share of questions, for an attribute in ``templates.QUESTIONS_BASE_WORDS``, drawn
        from that bank (drawn before all others)."""

    def question(self, p: Person, attribute: str, r: random.Random) -> QA:
        """A training question, or with ``p_paraphrase`` a paraphrase (no extra draw at 0,
        so a recipe without paraphrases draws the same batches as one that never had them)."""
        if self.p_words and attribute in FORMS["words"] and r.random() < self.p_words:  # (no draw at 0)
            return self.world.question(p, attribute, r, "words")
        if self.p_which and r.random() < self.p_which:  # (no draw at 0: older recipes' data stays)
            return self.world.question(p, attribute, r, "which")
        para = bool(self.p_paraphrase) and r.random() < self.p_paraphrase
        return self.world.question(p, attribute, r, "paraphrase" if para else "train")

    def enc(self, s: str) -> list[int]:
        return self.tok.encode(s, add_special_tokens=False)

    def qa(self, prefix: str, qas: list[tuple[str, str]]) -> Segment:
        """BOS, ``prefix``, then each (question, answer); only answers carry loss."""
        ids = [self.bos] + self.enc(prefix)
        lab = [IGNORE] * len(ids)
        for i, (q, a) in enumerate(qas):
            qi = self.enc(("\n" if i else "") + closed_prompt(q))
            ai = self.enc(answer_text(a))
            ids += qi + ai
            lab += [IGNORE] * len(qi) + ai
        return ids, lab

    def bio(self, p: Person, r: random.Random) -> Segment:
        ids = [self.bos] + self.enc(self.world.biography(p, r))
        return ids, [IGNORE] + ids[1:]

    def context(self, p: Person, r: random.Random, partial: bool, focus: tuple[str, ...] = ()) -> Segment:
        """A (possibly partial) biography in context, then 1-6 questions about it; the
        attributes in ``focus`` are always stated and asked."""
        attrs = list(ATTRIBUTES)
        if partial:
            attrs = r.sample(attrs, r.randint(1, len(attrs)))
            attrs += [a for a in focus if a not in attrs]
            p = Person(p.name, p.gender, {a: p.attrs[a] for a in attrs})
        doc = self.world.biography(p, r)
        asked = r.sample(attrs, r.randint(1, len(attrs)))
        if focus:  # (no extra draws without focus: the first stage's data does not depend on it)
            asked += [a for a in focus if a not in asked]
            r.shuffle(asked)
        qas = [(self.question(p, a, r).question, p.attrs[a]) for a in asked]
        return self.qa(f"Context: {doc}\n", qas)

    def needle(self, r: random.Random) -> Segment:
        """A needle haystack (``World.needle_haystack``) in context, then its question."""
        text, value = self.world.needle_haystack(r)
        return self.qa(f"Context: {text}\n", [(NEEDLE_QUESTION, value)])

    def unknown(self, base: list[Person], fresh: Iterator[Person], r: random.Random, k: int) -> Segment:
        """``k`` closed-book questions, each about a fresh person (answered with
        :data:`UNKNOWN_ANSWER`) or a base person (their fact) at even odds, at least one fresh:
        the model must tell whom it knows from whom it does not in the same segment."""
        fresh_at = r.randrange(k)
        qas = []
        for i in range(k):
            if i == fresh_at or r.random() < 0.5:
                qas.append((self.question(next(fresh), r.choice(ATTRIBUTES), r).question, UNKNOWN_ANSWER))
            else:
                qa = self.question(r.choice(base), r.choice(ATTRIBUTES), r)
                qas.append((qa.question, qa.answer))
        return self.qa("", qas)

    def closed(self, people: list[Person], r: random.Random, k: int) -> Segment:
        qas = []
        for _ in range(k):
            qa = self.question(r.choice(people), r.choice(ATTRIBUTES), r)
            qas.append((qa.question, qa.answer))
        return self.qa("", qas)


def batch(seg: Segmenter, seed: int, step: int, rows: int, length: int,
          p_context: float, p_partial: float, p_bio: float,
          focus: tuple[str, ...] = (), p_needle: float = 0.0, p_unknown: float = 0.0
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch for ``step``: depends only on (seed, step), so a resumed run is exact.
    ``p_needle`` / ``p_unknown``: shares of segments that are needle episodes / closed-book
    segments with people never read about (drawn first, and only when positive, so a
    recipe without them sees the same batches as before they existed)."""
    r = rng(seed, "batch", str(step))
    skill = seg.world.skill_people(r.getrandbits(31))
    base = seg.world.base
    pad = seg.tok.pad_token_id
    out_i: list[list[int]] = []
    out_l: list[list[int]] = []
    cur_i: list[int] = []
    cur_l: list[int] = []
    while len(out_i) < rows:
        if p_needle and r.random() < p_needle:
            ids, lab = seg.needle(r)
        elif p_unknown and r.random() < p_unknown:
            ids, lab = seg.unknown(base, skill, r, k=r.randint(2, 6))
        else:
            u = r.random()
            if u < p_context:
                ids, lab = seg.context(next(skill), r, r.random() < p_partial, focus)
            elif u < p_context + p_bio:
                ids, lab = seg.bio(r.choice(base), r)
            else:
                ids, lab = seg.closed(base, r, k=r.randint(2, 6))
        ids, lab = ids[:length], lab[:length]
        if len(cur_i) + len(ids) > length:
            out_i.append(cur_i + [pad] * (length - len(cur_i)))
            out_l.append(cur_l + [IGNORE] * (length - len(cur_l)))
            cur_i, cur_l = [], []
        cur_i += ids
        cur_l += lab
    return torch.tensor(out_i), torch.tensor(out_l)


def logits_at(logits: torch.Tensor, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits predicting each labelled token, and those tokens: (K, V), (K,). Labels
    align with the input ids, so position t's logits predict label t+1."""
    tgt = lab[:, 1:]
    m = tgt != IGNORE
    return logits[:, :-1][m], tgt[m]
