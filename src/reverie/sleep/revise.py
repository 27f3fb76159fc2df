"""Knowledge updates in a bank of a user's text: a short text about a stored item is
learned *into* that item (a revision), not beside it.

Read alone, "In 2022 she left Olmedo & Ruiz to become general counsel at Iberdrola." is a
text about nobody: its own adapter cannot answer "Who employs María José today?", and
stored as a second item about her it takes her other questions from the item that knows
them (the router prefers the newer of two items naming her). So at sleep, when a fitting
injector (``learn``) writes into a bank, a text of at most ``UPDATE_WORDS`` words whose
capitalised phrases name at least ``LINK_WORDS`` words of one stored item's key is a
revision of that item:

- its probes are written about the item's subject (the update's "she" and "I" become the
  person's name, in the probes and in the text the model reads to answer them);
- the item's own probes are kept, except those that mention a thing the update names
  (other than the subject: "Olmedo & Ruiz", "Iberdrola"), which the update changes;
- a correction is fitted to both with the item's adapter applied (a fresh LoRA, B at zero:
  it starts from what the item answers), and the two are stacked into one adapter, their
  ranks side by side (``hypernet.fit.stacked``), stored as a new item keyed by both texts'
  phrases (its ledger entry says which item it ``revises``). Refitting one adapter to
  both from scratch lost most of what the item knew (three dev biographies: 7 of their 18
  questions before, 2 after), and resuming the item's own factors with AdamW wrecked it
  (its first steps move every factor by about the learning rate);
  the old item is then forgotten (reason ``revised``), so one item answers for the person.

A sleep killed between the revised item's commit and the old item's removal leaves both;
the next sleep removes any live item that a live item revises (:func:`finish`).
"""

from __future__ import annotations

from dataclasses import dataclass

from reverie.memory import Memory, Weights
from reverie.memory.route import KeyRouter, key_phrases
from reverie.sleep.probe import ABOUT_KEY, Probe, TextProber, subject, things

UPDATE_WORDS = 48
"""Longest text taken as an update of a stored item (the dev sets' job changes: 8-24 words);
a longer text is a document of its own, even where it names what another names."""
LINK_WORDS = 2
"""Words of an item's key a text must name to revise it: a person's first name and a former
employer ("Sigrún", "Marel"), or one two-word name ("Polar Institute"). One word alone
("Paris") names too many things."""


@dataclass(frozen=True)
class Revision:
    """A text of tonight's that revises a stored item."""

    item: str
    """The stored item it revises."""
    subject: str | None
    """Whom the item is about (None: not known; the update's own subject is used)."""
    probes: list[Probe]
    """The item's active probes (before the update)."""
    key: list[str]
    """The item's routing key."""


def subject_of(entry: dict) -> str | None:
    """Whom a stored item is about: its recorded ``subject``, else the name in its first
    "What do you know about X?" probe (the text prober asks about the subject first)."""
    if entry.get("subject"):
        return str(entry["subject"])
    head, tail = TextProber.about.split("{x}")
    for q, _a, k in entry.get("probes", []):
        if k.startswith(ABOUT_KEY) and q.startswith(head) and q.endswith(tail):
            return q[len(head) : len(q) - len(tail)]
    return None


def find(weights: Weights, ledger: list[dict], texts: list[str]) -> list[Revision | None]:
    """For each text, the stored item it revises (see the module notes), or None; at most
    one text per item a night (a second one is stored as its own item)."""
    mem = weights.attached()
    router = weights.router()
    if not isinstance(router, KeyRouter):
        return [None] * len(texts)
    entries = mem.live_entries(ledger)
    taken: set[str] = set()
    out: list[Revision | None] = []
    for t in texts:
        rev = None
        if len(t.split()) <= UPDATE_WORDS:
            scores = {i: s for i, s in router.overlap(t).items() if s >= LINK_WORDS and i not in taken and i in entries}
            if scores:
                order = list(mem.items)  # a tie goes to the newest item
                item = max(scores, key=lambda i: (scores[i], order.index(i)))
                e = entries[item]
                rev = Revision(item, subject_of(e), [Probe(q, a, k) for q, a, k in e.get("probes", [])], list(e.get("key", [])))
                taken.add(item)
        out.append(rev)
    return out


def merged(rev: Revision, text: str, new: list[Probe]) -> list[Probe]:
    """The revised item's probes: the update's, and the item's own except those that ask
    what an update's probe asks (its key) or mention something the update names (other
    than the subject: the item's, else the update's own)."""
    own = set((rev.subject or subject(text) or "").lower().split())
    changed = [n.lower() for n in things(text) if not set(n.lower().split()) <= own]
    asked = {p.key for p in new}
    kept = [p for p in rev.probes
            if p.key not in asked and not any(c in f"{p.question} {p.answer}".lower() for c in changed)]
    return kept + new


def key(rev: Revision, text: str) -> list[str]:
    """The revised item's routing key: the item's, then the update's new phrases."""
    return list(dict.fromkeys(rev.key + key_phrases(text)))


def finish(mem: Memory, ledger: list[dict] | None = None) -> list[str]:
    """Forget every live item that a live item revises (reason ``revised``); returns them."""
    entries = mem.live_entries(ledger)
    done = []
    for e in entries.values():
        old = e.get("revises")
        if old and old in mem.items and old not in done:
            mem.forget(old, reason="revised")
            done.append(old)
    return done


__all__ = ["LINK_WORDS", "UPDATE_WORDS", "Revision", "find", "finish", "key", "merged", "subject_of"]
