"""Routing for the adapter bank (WISE-like side memory): which stored item answers a question.

The bank keeps every item as its own adapter; at answer time a router picks the item a
question is about and only that adapter is applied (none: the base model answers, so
unrelated questions are untouched). Two routers, in a registry:

- ``key`` (default): each item's *document key* is the set of capitalised phrases of the
  text it was written from (names of people, places, organisations: ``Charles Miles``,
  ``East Monica State University``), kept in its ledger entry — a few words, not the text.
  A question goes to the item whose key contains every capitalised phrase of the question
  (as a contiguous run of one of its phrases), preferring whole-phrase matches, then the
  item whose active probe questions (written at sleep) read most like the question, then
  the newest item; a question naming something no item contains goes to none, and one
  that names nothing goes to the item whose probe questions it matches (``PROBE_MATCH``),
  or to none. Matching whole phrases
  rather than words is what keeps a base-population "Charles Smith" away from an item
  about "Charles Miles" who works for "Smith Ltd" (word coverage routed 12% of unrelated
  questions somewhere at T = 1000; see ``reverie bench sequential``).
- ``activation``: the items' own adapters as keys (rows of A at one layer, which the
  hypernetwork points at the document's activations); needs a forward pass per question
  and degrades with the number of items (0.70 right among 100).

bm25s would rank the same candidates, but its scores have no absolute scale to abstain on,
and abstaining is what locality needs; the matching here is a set lookup per phrase.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable

import torch

from reverie.hypernet.chunks import sentences, split_chunks
from reverie.utils import registrar

ROUTERS: dict[str, type[Router]] = {}
register = registrar(ROUTERS)

_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_SENTENCE_END = re.compile(r"[.?!:;]\s*$")
MAX_GRAM = 6  # a question phrase longer than this is matched on its first MAX_GRAM words
CHUNK_TOKENS = 64
"""A text longer than the window goes into a bank as chunks of at most this many tokens, cut
where the subject changes (:func:`subject_chunks`), each its own item: about one biography.
``reverie bench long`` (seed 0), bank QA over single injection at 1/2/4/8x: 1.00 / 1.00 /
1.02 / 1.00 at 64 tokens; 0.97 / 1.00 / 1.00 / 0.91 at 48; 0.94 / 1.00 / 1.00 / 1.00 at 96;
0.88 / 0.86 / 0.79 / 0.75 with 48-token chunks cut on length alone."""
QUESTION_WORDS = frozenset(
    "what which who whom whose where when why how in on at for from by with of the a an is was are were "
    "do does did has have had can could will would should tell give name list describe".split())
"""Words that open a question in sentence case: never a name in a question."""
FUNCTION_WORDS = frozenset(
    "and or but to as it its this that these those there their they them he she his her i my me we our us you "
    "your what's who's where's be been being not no so than then also just only very much many more most "
    "name called about".split())
"""Words a question shares with any text: no evidence of what it is about."""
PROBE_MATCH = 0.6
"""A question that names nothing (no capitalised phrase past its first word: "What is the
special magic number?") has no key to look up; it goes to the item whose probe questions
it matches this well (Jaccard overlap of their word sets), or to none. 0.6 takes the probe's
own question and near copies ("What is the magic number?": 0.83) and leaves a question that
shares only its frame ("What is the capital of France?": 0.33)."""
PROBE_ROOM = 32
"""Tokens a question needs beside its text in the window. A text that fits the window but not
with a question goes into a bank as chunks too: sleep reads each item's text in context to
answer its probes, and the window keeps a prompt's end, so the text's opening would be cut
(a magic number in the first sentences of a window-long haystack was probed wrongly)."""
MAX_ROUTES = 4
"""Most chunks of one document a question is answered under (their adapters summed): a
person's sentences may straddle two chunks."""


def _norm(w: str) -> str:
    w = w.lower().replace("’", "'")
    return w[:-2] if w.endswith("'s") else w


def phrases(text: str) -> list[tuple[tuple[str, ...], bool]]:
    """Maximal runs of capitalised words (lower-cased, possessive dropped), each with
    whether it starts a sentence (its first capital may then be grammar, not a name)."""
    out: list[tuple[tuple[str, ...], bool]] = []
    run: list[str] = []
    start, prev_end = False, 0
    for m in _WORD.finditer(text):
        gap = text[prev_end : m.start()]
        initial = prev_end == 0 and not text[: m.start()].strip() or bool(_SENTENCE_END.search(gap))
        cap = m.group()[0].isupper()
        if run and (not cap or gap.strip()):  # a lower-case word or punctuation ends a run
            out.append((tuple(run), start))
            run = []
        if cap:
            if not run:
                start = initial
            run.append(_norm(m.group()))
        prev_end = m.end()
    if run:
        out.append((tuple(run), start))
    return out


def _bag(text: str) -> set[str]:
    return {_norm(w) for w in _WORD.findall(text)}


def key_phrases(text: str, limit: int = 64) -> list[str]:
    """An item's document key: its distinct capitalised phrases, first ``limit``."""
    seen: dict[str, None] = {}
    for p, _ in phrases(text):
        seen.setdefault(" ".join(p), None)
    return list(seen)[:limit]


def _named(p: tuple[str, ...], full: dict[str, str]) -> str | None:
    """The name a capitalised phrase stands for: itself when it has two or more words, else
    the longer name in ``full`` that the one word shortens (None: not known as a name)."""
    return " ".join(p) if len(p) > 1 else full.get(p[0])


def _opener(ps: list[tuple[tuple[str, ...], bool]], full: dict[str, str]) -> str | None:
    """The name a text opens with (its first phrase, when that starts a sentence), or None."""
    return _named(ps[0][0], full) if ps and ps[0][1] else None


def chunk_keys(chunks: list[str]) -> list[list[str]]:
    """Document keys for the consecutive chunks of one text. Running text names a person in
    full once, then says "Allison" or "She": a chunk's own phrases miss whom such sentences
    are about. Each chunk's key therefore also holds the full phrase a one-word name
    shortens (the latest phrase of two or more words starting with it, earlier in the text),
    and, when the chunk does not open by naming someone, the subject in force where it
    begins: the latest sentence-initial phrase of two or more words before it (in running
    text, almost always a person). Measured in ``reverie bench long`` (bank)."""
    full: dict[str, str] = {}  # first word -> the latest multi-word phrase that starts with it
    subject: str | None = None
    out: list[list[str]] = []
    for c in chunks:
        key = dict.fromkeys(key_phrases(c))  # an ordered set
        ps = phrases(c)
        if subject is not None and _opener(ps, full) is None:
            key.setdefault(subject)
        for p, initial in ps:
            name = _named(p, full)
            if name is None:
                continue
            key.setdefault(name)
            full[p[0]] = name
            if initial:
                subject = name
        out.append(list(key))
    return out


def subject_chunks(text: str, n_tokens: Callable[[str], int], limit: int = CHUNK_TOKENS) -> list[str]:
    """``text`` cut into chunks of at most ``limit`` tokens that each stay with one subject:
    a sentence that opens by naming someone other than the subject in force (a phrase of two
    or more words, or a first name shortening one) starts a new chunk, and a subject's run
    of sentences longer than ``limit`` is packed into several (reverie.hypernet.chunks).
    A chunk that mixes two people's facts makes an adapter that answers one person's
    question with the other's value (the hypernetwork writes *what*, barely *whose*)."""
    runs: list[list[str]] = []
    full: dict[str, str] = {}
    subject: str | None = None
    for sent in sentences(text):
        ps = phrases(sent)
        for p, _ in ps:
            if len(p) > 1:
                full.setdefault(p[0], " ".join(p))
        opener = _opener(ps, full)
        if not runs or (opener is not None and opener != subject):
            runs.append([])
        if opener is not None:
            subject = opener
        runs[-1].append(sent)
    return [c for run in runs for c in split_chunks(" ".join(run), n_tokens, limit)]


def _indexed(key: list[str]) -> list[tuple[str, list[str]]]:
    """For each word of each key phrase: the word, and the runs of the phrase (up to
    ``MAX_GRAM`` words) that start at it — what the key router indexes an item under."""
    out = []
    for ph in key:
        ws = ph.split()
        out += [(w, [" ".join(ws[i:j]) for j in range(i + 1, min(len(ws), i + MAX_GRAM) + 1)]) for i, w in enumerate(ws)]
    return out


class Router(ABC):
    """Base: ``add`` items as they are stored, ``route`` a question to an item id or None."""

    name = "?"

    def __init__(self, **_: object):  # noqa: B027 - every router is built from one keyword set (bm=, ...)
        pass

    @abstractmethod
    def add(self, item_id: str, key: list[str], factors: dict | None = None, questions: list[str] | None = None,
            group: str | None = None, names: list[str] | None = None) -> None:
        """``questions``: what the item is known to answer (its active probes, when the sleep
        cycle wrote them), to tell apart items about the same name; ``group``: the document
        the item is a chunk of; ``names``: whom and what the item is mainly about (the
        names its prober asked "what do you know about" of), where known."""

    @abstractmethod
    def remove(self, item_id: str) -> None:
        """Stop routing to an item (forgotten)."""

    @abstractmethod
    def route(self, question: str) -> str | None:
        """The item that answers ``question``, or None."""

    def routes(self, question: str) -> list[str]:
        """The items a question is answered under: the best one, or none."""
        item = self.route(question)
        return [] if item is None else [item]


@register("key")
class KeyRouter(Router):
    """Routing on document keys (capitalised phrases); see the module docstring."""

    def __init__(self, **_: object):
        self.grams: dict[str, set[int]] = defaultdict(set)  # every contiguous run of a key phrase -> items
        self.words: dict[str, set[int]] = defaultdict(set)  # word -> items (document frequency)
        self.ids: list[str | None] = []  # by insertion order; None once removed
        self._keys: list[list[str]] = []
        self._questions: list[list[set[str]]] = []
        self._groups: dict[str, str | None] = {}
        self._names: list[set[str]] = []  # per item: the words of its main names (empty: not known)
        self._at: dict[str, int] = {}  # item id -> its insertion index
        self._live = 0  # items not removed (checked per question: counting self.ids was O(T))

    def add(self, item_id: str, key: list[str], factors: dict | None = None, questions: list[str] | None = None,
            group: str | None = None, names: list[str] | None = None) -> None:
        n = len(self.ids)
        self._at[item_id] = n
        self.ids.append(item_id)
        self._live += 1
        self._groups[item_id] = group
        self._keys.append(list(key))
        self._questions.append([_bag(q) for q in questions or []])
        self._names.append({w for name in names or [] for w in _bag(name)})
        for w, runs in _indexed(key):
            self.words[w].add(n)
            for g in runs:
                self.grams[g].add(n)

    def remove(self, item_id: str) -> None:
        n = self.ids.index(item_id)
        self.ids[n] = None
        self._live -= 1
        for w, runs in _indexed(self._keys[n]):
            self.words[w].discard(n)
            for g in runs:
                self.grams[g].discard(n)

    def candidates(self, question: str) -> list[str]:
        """Every item whose key contains all of the question's capitalised phrases, best first."""
        if not self._live:
            return []
        need: list[tuple[str, ...]] = []
        for p, initial in phrases(question):
            p = self._unnamed(p, initial)
            if p:
                need.append(p[:MAX_GRAM])
        if not need:
            return self._by_probes(question)
        cands: set[int] | None = None
        for p in need:
            c = self.grams.get(" ".join(p), set())
            cands = set(c) if cands is None else cands & c
            if not cands:
                return []
        assert cands is not None
        # Prefer an item where a question phrase is a whole key phrase ("Charles Miles", not
        # the "Charles" of "Charles Wood"); then, among items about the same name, the one
        # whose own probe questions read most like this one (an update that states only a
        # new employer answers employer questions; the older biography, the rest); then the
        # newest (a later item about the same name is the newer knowledge).
        whole = [" ".join(p) for p in need]
        bag = _bag(question)

        def rank(n: int) -> tuple[int, float, int]:
            sim = max((len(bag & q) / len(bag | q) for q in self._questions[n]), default=0.0)
            return sum(w in self._keys[n] for w in whole), sim, n

        order = sorted(cands, key=rank, reverse=True)
        return [i for n in order if (i := self.ids[n]) is not None]

    def overlap(self, text: str) -> dict[str, int]:
        """Live item -> words of ``text``'s distinct capitalised phrases found in its key
        (each matched as a run of a key phrase, as a question's are; a lone "I" never counts):
        how much a text names what an item names."""
        score: dict[str, int] = defaultdict(int)
        seen = set()
        for p, initial in phrases(text):
            p = self._unnamed(p, initial)[:MAX_GRAM]
            if not p or p == ("i",) or p in seen:
                continue
            seen.add(p)
            for n in self.grams.get(" ".join(p), ()):
                if (i := self.ids[n]) is not None:
                    score[i] += len(p)
        return dict(score)

    def _unnamed(self, p: tuple[str, ...], initial: bool) -> tuple[str, ...]:
        """A question's capitalised phrase less a sentence-case first word that names nothing
        ("What", "In", "Which": not a word of any key)."""
        return p[1:] if initial and not self.words.get(p[0]) else p

    def _by_probes(self, question: str) -> list[str]:
        """Items whose probe questions match a question that names nothing, best (then
        newest) first; O(items), but such questions are rare in a memory of people."""
        bag = _bag(question)
        scored = [(max(len(bag & q) / len(bag | q) for q in qs), n, i)
                  for n, (qs, i) in enumerate(zip(self._questions, self.ids, strict=True)) if qs and i is not None]
        return [i for sim, _, i in sorted(scored, reverse=True) if sim >= PROBE_MATCH]

    def route(self, question: str) -> str | None:
        c = self.candidates(question)
        return c[0] if c else None

    def routes(self, question: str) -> list[str]:
        """The best item and, when it is a chunk of a longer document, the other chunks of
        that document that match too (at most ``MAX_ROUTES``)."""
        c = self.candidates(question)
        if not c:
            return []
        g = self._groups.get(c[0])
        return c[:1] if g is None else [i for i in c if self._groups.get(i) == g][:MAX_ROUTES]


@register("text")
class TextRouter(KeyRouter):
    """The key router for a user's own text (a real model's bank): a question's opening
    question words ("What", "In", "Which") never count as a name, even where some text
    starts a sentence with them; and a question that names nothing goes to the item whose
    probe words cover most of its content words ("Which port does the staging server
    listen on?" -> the note about the staging server), at least ``PROBE_MATCH`` of them and
    two, or whose probe question reads like it as a whole. An item is not chosen for a name
    it mentions only in passing (see :meth:`candidates`)."""

    def _unnamed(self, p: tuple[str, ...], initial: bool) -> tuple[str, ...]:
        while p and (p[0] in QUESTION_WORDS or (initial and not self.words.get(p[0]))):
            p, initial = p[1:], False
        return p

    def candidates(self, question: str) -> list[str]:
        """The key router's candidates, less items the question names only in passing: an
        item whose main names are known is kept when the question says one of their words,
        or when a content word of the question (past its names) is among the item's probe
        words. On the dev halves (items stored, the other items' questions asked) this routes
        none of those questions anywhere, where names alone routed 7% of Wikipedia and 5% of
        notes questions to an item naming the same thing, at 0.71 of the notes' own questions
        routed right instead of 0.76 (bios and Wikipedia unchanged)."""
        found = super().candidates(question)
        if not found:
            return found
        bag = _bag(question)
        names = {w for p, initial in phrases(question) for w in self._unnamed(p, initial)}
        content = {w for w in bag - names if w not in QUESTION_WORDS and w not in FUNCTION_WORDS}

        def relevant(i: str) -> bool:
            n = self._at[i]
            main = self._names[n]
            return not main or bool(names & main) or any(content & q for q in self._questions[n])

        return [i for i in found if relevant(i)]

    def _by_probes(self, question: str) -> list[str]:
        bag = _bag(question)
        content = {w for w in bag if w not in QUESTION_WORDS and w not in FUNCTION_WORDS}
        scored = []
        for n, (qs, i) in enumerate(zip(self._questions, self.ids, strict=True)):
            if not qs or i is None:
                continue
            whole = max(len(bag & q) / len(bag | q) for q in qs)
            hit = len(content & set().union(*qs))
            cover = hit / len(content) if content and hit >= 2 else 0.0
            scored.append((max(whole, cover), n, i))
        return [i for sim, _, i in sorted(scored, reverse=True) if sim >= PROBE_MATCH]


@register("activation")
class ActivationRouter(Router):
    """Adapter-bank routing on the adapters' own keys: each item's rows of A at one layer
    are directions in the space of that layer's down-projection inputs (the hypernetwork
    points them at the document's own activations); a question goes to the item whose key
    fires most strongly (cosine) on any of its tokens, or to none below ``threshold``.
    Layer 0 routed best (0.70 of questions to the right item among 100, against 0.58, 0.0,
    0.22 for layers 2, 1, 3); the threshold sits between the median best score of questions
    about stored people (0.66) and about others (0.45)."""

    def __init__(self, bm: object = None, target: str = "mlp.down_proj", layer: int = 0, threshold: float = 0.55, **_: object):
        if bm is None:
            raise ValueError("the activation router needs the base model (bm=)")
        self.bm, self.target = bm, target
        self.layer, self.threshold = layer, threshold
        self.keys: list[torch.Tensor] = []  # per item (r, d_in), unit rows
        self.ids: list[str | None] = []
        self._K: torch.Tensor | None = None

    def add(self, item_id: str, key: list[str], factors: dict | None = None, questions: list[str] | None = None,
            group: str | None = None, names: list[str] | None = None) -> None:
        if factors is None:
            raise ValueError("the activation router keys items by their factors")
        A = factors[self.target][0][self.layer]  # (r, d_in)
        self.ids.append(item_id)
        self.keys.append(torch.nn.functional.normalize(A.float(), dim=-1).half())
        self._K = None

    def remove(self, item_id: str) -> None:
        self.ids[self.ids.index(item_id)] = None

    @torch.no_grad()
    def _acts(self, question: str) -> torch.Tensor:
        from reverie.hypernet.lora import target_module

        bm = self.bm
        seen: list[torch.Tensor] = []
        h = target_module(bm.model, self.layer, self.target).register_forward_pre_hook(lambda _m, a: seen.append(a[0][0]))  # type: ignore[attr-defined]
        try:
            bm.model(torch.tensor([bm.encode(bm.prompt(question))[-bm.max_length:]]))  # type: ignore[attr-defined]
        finally:
            h.remove()
        return torch.nn.functional.normalize(seen[0], dim=-1)  # (T, d_in)

    def route(self, question: str) -> str | None:
        if not self.keys:
            return None
        if self._K is None:
            self._K = torch.cat(self.keys).float()  # (n * r, d_in)
        r = self.keys[0].shape[0]
        sims = (self._K @ self._acts(question).T).abs().amax(-1).view(-1, r).amax(-1)  # (n,)
        for j, i in enumerate(self.ids):
            if i is None:
                sims[j] = -1.0
        best = int(sims.argmax())
        return self.ids[best] if float(sims[best]) >= self.threshold else None
