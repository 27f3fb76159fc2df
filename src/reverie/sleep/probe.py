"""Probes: the questions an observation answers, answered by the model itself.

At sleep each consolidated item gets probe question-answer pairs: the questions come from
a prober (which knows the language of its texts), the answers from the model itself with
the text in its context (self-generated, as Doc-to-LoRA's targets are). They are stored in
the item's ledger entry and serve three uses: replay re-distils them after later items
(no raw text kept), a later item whose probe gets another answer *supersedes* them (a
knowledge update), and ``memories show`` prints what the item answers now.

Probers live in a registry; the embedded world's is :class:`WorldProber`. A prober for
free text (an instruct model writing its own questions) belongs to the real-model work.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache

from reverie.base.model import BaseModel
from reverie.utils import registrar
from reverie.world.templates import BIO, NEEDLE, NEEDLE_QUESTION, QUESTIONS_TRAIN

PROBERS: dict[str, type[Prober]] = {}
register_prober = registrar(PROBERS)


@dataclass(frozen=True)
class Probe:
    question: str
    answer: str
    key: str
    """What the question is about, e.g. "Ada Lovelace|employer": probes with one key ask
    for the same fact (a different answer later means the fact changed)."""


class Prober(ABC):
    """Finds the questions a text answers."""

    @abstractmethod
    def questions(self, text: str) -> list[tuple[str, str]]:
        """(question, key) pairs; empty when the text states nothing the prober knows."""

    def probe(self, bm: BaseModel, texts: list[str]) -> list[list[Probe]]:
        """Every text's probes, answered greedily by ``bm`` with the text in context."""
        qs = [self.questions(t) for t in texts]
        prompts = [bm.prompt(q, t) for t, ql in zip(texts, qs, strict=True) for q, _ in ql]
        answers = iter(bm.answer_batch(prompts) if prompts else [])
        return [[Probe(q, next(answers), k) for q, k in ql] for ql in qs]


@cache
def _sentence_patterns() -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for attr, tpls in BIO.items():
        for tpl in tpls:
            rx = re.escape(tpl)
            for name, grp in (("subj", "(?P<subj>[A-Z][\\w'.-]*(?: [A-Z][\\w'.-]*)*)"), ("value", "(?P<value>.+?)"),
                              ("poss", "(?P<poss>his|her)"), ("pron", "(?:he|she)")):
                rx = rx.replace(re.escape("{" + name + "}"), grp, 1).replace(re.escape("{" + name + "}"), "(?:.+?)")
            out.append((attr, re.compile("^" + rx + "$")))
    return out


_NEEDLE = re.compile("^" + re.escape(NEEDLE).replace(re.escape("{value}"), r"\S+?") + "$")
NEEDLE_KEY = "|magic_number"
"""The probe key of a "special magic number" sentence (no person: the number stands alone)."""


@register_prober("world")
class WorldProber(Prober):
    """Reads the world's biography sentences: who each is about (the full name, carried to
    later sentences that use a first name or pronoun) and which attribute it states; asks
    every training question template about each stated attribute. A "special magic number"
    sentence (the needle of ``reverie bench long``) is asked for with its one question."""

    def questions(self, text: str) -> list[tuple[str, str]]:
        stated: dict[str, list[str]] = {}  # name -> attributes, in order
        poss: dict[str, str] = {}  # name -> his | her, where the text tells
        name = None
        needle = False
        for sent in re.split(r"(?<=\.)\s+", text.strip()):
            if _NEEDLE.match(sent):
                needle = True
                continue
            for attr, rx in _sentence_patterns():
                m = rx.match(sent)
                if m is None:
                    continue
                subj = m.group("subj")
                if " " in subj:
                    name = subj
                elif name is None or subj not in ("He", "She", name.split(" ")[0]):
                    break  # a subject we cannot tie to a full name
                if subj in ("He", "She"):
                    poss.setdefault(name, "his" if subj == "He" else "her")
                if m.groupdict().get("poss"):
                    poss.setdefault(name, m.group("poss"))
                if attr not in stated.setdefault(name, []):
                    stated[name].append(attr)
                break
        out = []
        for who, attrs in stated.items():
            for attr in attrs:
                for tpl in QUESTIONS_TRAIN[attr]:
                    if "{poss}" in tpl and who not in poss:
                        continue
                    out.append((tpl.format(name=who, poss=poss.get(who, "")), f"{who}|{attr}"))
        if needle:
            out.append((NEEDLE_QUESTION, NEEDLE_KEY))
        return out


__all__ = ["PROBERS", "Probe", "Prober", "WorldProber", "register_prober"]
