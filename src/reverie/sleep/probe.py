"""Probes: the questions an observation answers, answered by the model itself.

At sleep each consolidated item gets probe question-answer pairs: the questions come from
a prober (which knows the language of its texts), the answers from the model itself with
the text in its context (self-generated, as Doc-to-LoRA's targets are). They are stored in
the item's ledger entry and serve three uses: replay re-distils them after later items
(no raw text kept), a later item whose probe gets another answer *supersedes* them (a
knowledge update), and ``memories show`` prints what the item answers now.

Probers live in a registry: the embedded world's is :class:`WorldProber`; any text a user
writes gets :class:`TextProber`'s generic probes (what it says about each named thing,
number and date, cloze prompts from its sentences, a summary).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache

from reverie.base.model import BaseModel, Generation
from reverie.base.prompt import WORLD
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

    def probe(self, bm: BaseModel, texts: list[str], subjects: list[str | None] | None = None) -> list[list[Probe]]:
        """Every text's probes, answered greedily by ``bm`` with the text in context.
        ``subjects``: whom each text is about where the caller knows better than the text
        (an update that says "she"); probers that find subjects themselves ignore it."""
        return self.answer(bm, texts, [self.questions(t) for t in texts])

    def answer(self, bm: BaseModel, texts: list[str], qs: list[list[tuple[str, str]]]) -> list[list[Probe]]:
        """Each text's (question, key) pairs as probes, answered greedily by ``bm`` with the
        text in context, all in one batch."""
        prompts = [bm.prompt(q, t) for t, ql in zip(texts, qs, strict=True) for q, _ in ql]
        answers = iter(bm.answer_batch(prompts, self.generation) if prompts else [])
        return [[Probe(q, next(answers), k) for q, k in ql] for ql in qs]

    generation: Generation | None = None
    """How the teacher's answers are generated (None: :class:`Generation`'s defaults)."""


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


_SENT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9\u00C0-\u024F])")
_ABBREVIATIONS = set("no nos mr mrs ms dr st mt jr sr prof gen col lt sgt capt rev vol fig approx vs".split())
"""Words whose period does not end a sentence."""
_TOKEN = re.compile(r"[\w\u00C0-\u024F][\w\u00C0-\u024F'’.-]*")
_MONTHS = ("january february march april may june july august september october november december "
           "jan feb mar apr jun jul aug sep sept oct nov dec spring summer autumn fall winter").split()
_FUNCTION = set("a an the and or but of in on at to for from by with as is was are were be been it its "
                "he she they his her their i my we our you your this that these those there here then "
                "when where while after before since until during also not no i i'm i've i'd i'll".split())


def sentences(text: str) -> list[str]:
    """The text's sentences (split after . ! ? before a capital or digit, except after an
    abbreviation or an initial), blank ones dropped."""
    flat = " ".join(text.split())
    out, start = [], 0
    for m in _SENT.finditer(flat):
        word = flat[: m.start()].rsplit(" ", 1)[-1].rstrip(".").lstrip("(\"'[")
        if word.lower() in _ABBREVIATIONS or "." in word or (len(word) == 1 and word.isupper()):
            continue  # "World No. 1", "U.S. Army", "John F. Kennedy": the sentence goes on
        out.append(flat[start : m.start()])
        start = m.end()
    return [s.strip() for s in [*out, flat[start:]] if s.strip()]


def anchors(sentence: str) -> list[tuple[int, str]]:
    """(character offset, phrase) of what a sentence states that a question could ask for:
    runs of capitalised words past its first word, numbers, and dates (a month or season
    with the numbers beside it)."""
    out: list[tuple[int, str]] = []
    toks = list(_TOKEN.finditer(sentence))
    i = 0
    while i < len(toks):
        w = toks[i].group().rstrip(".")
        low = w.lower()
        numeric = any(c.isdigit() for c in w)
        cap = w[:1].isupper() and (i > 0 or (len(toks) > 1 and toks[1].group()[:1].isupper())) and low not in _FUNCTION
        if numeric or cap or low in _MONTHS:
            j = i + 1
            while j < len(toks) and ((gap := sentence[toks[j - 1].end() : toks[j].start()]) == " " or (
                    numeric or low in _MONTHS) and gap.strip(" ,") in ("", "/")) and (
                    toks[j].group()[:1].isupper() or any(c.isdigit() for c in toks[j].group())
                    or toks[j].group().lower().rstrip(".") in _MONTHS
                    or (toks[j].group().lower() in ("de", "la", "van", "von", "da", "del", "of")
                        and j + 1 < len(toks) and toks[j + 1].group()[:1].isupper())):
                j += 1
            if sentence[toks[j - 1].end() : toks[j - 1].end() + 1] != ":":  # "Name:", "Education:": a label
                out.append((toks[i].start(), sentence[toks[i].start() : toks[j - 1].end()].rstrip(".,")))
            i = j
        else:
            i += 1
    return out


def named(text: str) -> list[str]:
    """Distinct named things of a text (runs of capitalised words, a sentence's first word
    only when the run goes on), numbers and dates, in order of first mention."""
    seen: dict[str, None] = {}
    for s in sentences(text):
        for _, a in anchors(s):
            seen.setdefault(a, None)
    return list(seen)


def things(text: str) -> list[str]:
    """The named things of :func:`named` that are neither numbers nor dates."""
    return [n for n in named(text) if not any(c.isdigit() for c in n) and n.split()[0].lower() not in _MONTHS]


_PLACE_OR_ORG = set("university college institute school academy bank inc ltd llc gmbh company corporation "
                    "group hospital city street road river lake mount county state republic kingdom "
                    "united north south east west new san santa st de".split())


def subject(text: str) -> str | None:
    """Who or what a text is mainly about: the most mentioned named thing (not a number or
    date), a one-word mention of a longer name's first or last word counting for it, a
    multi-word name with no place or organisation word (a person's) counting one more, ties
    to the earliest. Cloze prompts name it, so that a sentence saying "she" or stating a
    fact with no name stays tied to whom it is about."""
    names = things(text)
    if not names:
        return None
    low = text.lower()

    def score(n: str) -> tuple[int, int]:
        words = n.lower().replace(",", " ").split()
        full = low.count(n.lower())
        parts = sum(low.count(w) - full for w in {words[0], words[-1]}) if len(words) > 1 else 0
        person = len(words) > 1 and not _PLACE_OR_ORG & set(words)
        return full + parts + int(person), -names.index(n)

    return max(names, key=score)


_FIRST_PERSON = ((re.compile(r"\bI'm\b"), "{x} is"), (re.compile(r"\bI've\b"), "{x} has"),
                 (re.compile(r"\bI\b"), "{x}"), (re.compile(r"\b[Mm]y\b"), "{x}'s"), (re.compile(r"\bme\b"), "{x}"))
_LEADING = re.compile(r"^(He|She|They|His|Her|Their)\b")
_PREPOSITION = re.compile(r"\b(?:in|on|at|from|near|since|during|of)\s*$", re.IGNORECASE)
_YEAR = re.compile(r"^(1[0-9]|20)\d\d$")


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_prober(bm: BaseModel) -> str:
    """The prober that knows a model's texts: the world's for the embedded world model
    (its biographies and question templates), the free-text one for any other model."""
    return "world" if bm.format is WORLD else "text"


def told(text: str, x: str | None) -> str:
    """The text, sentence by sentence :func:`resolved` to ``x``."""
    return " ".join(resolved(s, x) for s in sentences(text))


def resolved(sentence: str, x: str | None) -> str:
    """The sentence with ``x`` for a leading he/she/they and for the first person, so that
    it says on its own whom it is about."""
    if x is None:
        return sentence
    for rx, sub in _FIRST_PERSON:
        sentence = rx.sub(sub.format(x=x), sentence)
    m = _LEADING.match(sentence)
    if m:
        sentence = (f"{x}'s" if m.group(1) in ("His", "Her", "Their") else x) + sentence[m.end() :]
    return sentence


def wh_word(sentence: str, offset: int, phrase: str) -> str:
    """The question word an anchor is asked with: when (a date or year), where (a name after
    in/at/from/near), how many / what number (a number), else what."""
    words = phrase.lower().replace(",", " ").replace("/", " ").split()
    if any(w in _MONTHS or _YEAR.match(w) for w in words) or "/" in phrase:
        return "when"
    if any(c.isdigit() for c in phrase):
        return "what number"
    if re.search(r"\b(?:in|at|from|near)\s*(?:the\s*)?$", sentence[:offset], re.IGNORECASE):
        return "where"
    return "what"


_AUX = {"is", "was", "are", "were", "has", "have", "had", "will", "can"}
_ADVERBS = {"now", "still", "also", "currently", "later", "then", "first", "once", "already", "recently", "today", "briefly"}
_IRREGULAR = dict(w.split(":") for w in (
    "took:take spent:spend grew:grow went:go made:make got:get gave:give wrote:write left:leave began:begin "
    "became:become won:win met:meet taught:teach built:build led:lead ran:run found:find kept:keep sold:sell "
    "bought:buy brought:bring held:hold came:come saw:see drove:drive flew:fly read:read set:set put:put "
    "chose:choose fell:fall lost:lose paid:pay sang:sing spoke:speak stood:stand swam:swim threw:throw").split())


def _lemma(verb: str) -> tuple[str, str] | None:
    """(do-support auxiliary, base form) of a past or third-person verb, or None."""
    v = verb.lower()
    if v in _IRREGULAR:
        return "did", _IRREGULAR[v]
    if v.endswith("ied"):
        return "did", v[:-3] + "y"
    if v.endswith("ed") and len(v) > 4:
        stem = v[:-2]
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "ls":
            return "did", stem[:-1]
        if stem.endswith(("v", "c", "z", "u", "at", "et", "it", "ir", "ur", "tl", "bl", "pl", "dl", "gl", "kl", "as", "us", "is")) or (
                stem.endswith("g") and not stem.endswith("ng")):
            return "did", stem + "e"
        return "did", stem
    if v.endswith("ies") and len(v) > 4:
        return "does", v[:-3] + "y"
    if v.endswith(("ches", "shes", "sses", "xes")):
        return "does", v[:-2]
    if v.endswith("s") and not v.endswith(("ss", "us", "is")) and len(v) > 3:
        return "does", v[:-1]
    return None


def fronted(sentence: str, x: str | None, offset: int, phrase: str, wh: str) -> str | None:
    """A plain question asking for ``phrase`` of a sentence that opens with its subject
    ``x``, the question word fronted and the verb inverted ("Sigrún was born in Akureyri"
    -> "Where was Sigrún born?"; "She joined Marel" -> "What did Sigrún join?"), or None
    where the sentence is not built that way."""
    if not x or not sentence.startswith(x + " ") or offset <= len(x):
        return None
    head = re.sub(r"\s+(?:the|a|an)$", "", sentence[len(x) : offset].strip())
    if wh in ("when", "where"):
        head = _PREPOSITION.sub("", head).rstrip()
    words = head.split()
    tail = sentence[offset + len(phrase) :].strip(" ,;").rstrip(".!")
    if not words:
        return None
    if words[0].lower() in _AUX:
        q = f"{wh} {words[0].lower()} {x} {' '.join(words[1:])}"
    else:
        i = 0
        while i < len(words) and words[i].lower() in _ADVERBS:
            i += 1
        lemma = _lemma(words[i]) if i < len(words) else None
        if lemma is None:
            return None
        q = f"{wh} {lemma[0]} {x} {' '.join(words[:i] + [lemma[1]] + words[i + 1 :])}"
    if tail and len(tail.split()) <= 5 and not tail[:1].isupper():
        q += " " + tail
    q = " ".join(q.split()).rstrip(" ,;")
    return q[0].upper() + q[1:] + "?"


ABOUT_KEY = "about|"
"""Key prefix of the text prober's "What do you know about X?" probes (x lower-cased after it)."""


@register_prober("text")
class TextProber(Prober):
    """Generic probes for any text a user writes, built from its own sentences (a leading
    pronoun or the first person replaced by the text's subject), for each thing a sentence
    states (a name, number or date):

    - optionally (``with_fronted``) a plain question, the question word fronted ("Where was
      Sigrún born?"), where the sentence opens with its subject; answered by the model with
      the text in context;
    - an echo question, the question word in place ("Sigrún was born when in Akureyri?"),
      answered with the whole sentence: the text's own words are the best teacher of it;
    - a cloze prompt cut before it ("Complete from what you read about X: ..."), answered
      with the rest of the sentence;
    - (``with_recite``) "What do you know about X?" and the summary prompt answered with the
      whole text;

    and "What do you know about X?" for the subject and the first named things, and a
    summary prompt, answered by the model with the text in context. None of these forms is
    a benchmark question form (the dev sets' questions are written by hand).

    Keys name what each asks about: ``about|x`` is shared by every text that names x (a later
    text whose answer differs supersedes it: a knowledge update); a fact or summary key is
    the text's own (``fact|<text hash>|sentence|offset``, ``summary|<text hash>``)."""

    about = "What do you know about {x}?"
    cloze = "Complete from what you read about {x}: {prefix} ..."
    summary = "Summarise what you read."
    most_named = 4
    """Named things asked about with ``about`` (the subject first, then in order of mention)."""
    most_cuts = 4
    """Facts probed per sentence."""
    with_fronted = False
    """Also a plain question per fact, the question word fronted ("Where was X born?"),
    answered by the model with the text in context. Off: on three dev biographies it
    answered 7 of 18 questions after sleep against 8 of 18 without, at a fifth more rows."""
    with_echo = True
    """Also the echo question per fact, answered with the whole sentence."""
    with_cloze = True
    """Also a cloze prompt per fact, answered with the rest of the sentence."""
    with_recite = True
    """Also the ``about`` prompt for the subject and the summary prompt answered with the
    whole text (its sentences, a leading pronoun or the first person replaced by the
    subject), beside the model's own answers to them: ties every fact to whom it is about
    and to the other facts it was written with. On the dev halves (8 biographies, 6
    Wikipedia paragraphs, 6 notes; each item's own adapter) 38 of 84 questions against 33
    without (21 / 9 / 8 against 20 / 7 / 6; the text in context: 21 / 14 / 14)."""
    generation = Generation(max_new_tokens=40)

    def questions(self, text: str, x: str | None = None) -> list[tuple[str, str]]:
        """``x``: whom the text is about (None: its :func:`subject`)."""
        x = x or subject(text)
        names = ([x] if x else []) + [n for n in named(text) if n != x and not any(c.isdigit() for c in n)]
        out = [(self.about.format(x=n), f"{ABOUT_KEY}{n.lower()}") for n in names[: self.most_named]]
        return out + [(self.summary, f"summary|{_tag(text)}")]

    def facts(self, text: str, x: str | None = None) -> list[tuple[str, str, str]]:
        """(prompt, answer, key): per sentence and stated thing, an echo question and a cloze
        prompt (a sentence with nothing to ask gets one cloze cut half-way), then the recital
        rows (``with_recite``); ``x``: whom the text is about (None: its :func:`subject`)."""
        out = []
        x, tag, sents = x or subject(text), _tag(text), sentences(text)
        for n, raw in enumerate(sents):
            s = resolved(raw, x)
            found = [(o, a) for o, a in anchors(s) if not (x and a == x)][: self.most_cuts]
            if not found:
                words = [m.start() for m in _TOKEN.finditer(s)]
                if len(words) > 3:
                    c = words[len(words) // 2]
                    out.append((self.cloze.format(x=x or "it", prefix=s[:c].rstrip()), s[c:].strip(), f"fact|{tag}|{n}|{c}"))
                continue
            for o, a in found:
                wh = wh_word(s, o, a)
                plain = fronted(s, x, o, a, wh) if self.with_fronted else None
                if plain is not None:
                    out.append((plain, "", f"fact|{tag}|{n}|{o}"))
                head = _PREPOSITION.sub("", s[:o]).rstrip() if wh in ("when", "where") else s[:o].rstrip()
                q = f"{head} {wh}{s[o + len(a):]}".strip().rstrip(".!") + "?"
                if self.with_echo:
                    out.append((q[0].upper() + q[1:], s, f"fact|{tag}|{n}|{o}"))
                if o > 0 and self.with_cloze:
                    out.append((self.cloze.format(x=x or "it", prefix=s[:o].rstrip()), s[o:].strip(), f"fact|{tag}|{n}|{o}"))
        if self.with_recite and sents:
            whole = told(text, x)
            out += [(self.about.format(x=x), whole, f"recite|{tag}")] if x else []
            out.append((self.summary, whole, f"recite|{tag}"))
        return out

    def probe(self, bm: BaseModel, texts: list[str], subjects: list[str | None] | None = None) -> list[list[Probe]]:
        xs = subjects or [None] * len(texts)
        facts = [self.facts(t, x) for t, x in zip(texts, xs, strict=True)]
        # Fronted questions (answer "") are answered by the model with the text in context,
        # with the generic questions, in one batch; where the subject was given, the text
        # in context says it in place of a pronoun or the first person.
        qs = [self.questions(t, x) + [(q, k) for q, a, k in f if not a] for t, x, f in zip(texts, xs, facts, strict=True)]
        shown = [t if x is None else told(t, x) for t, x in zip(texts, xs, strict=True)]
        asked = self.answer(bm, shown, qs)
        return [ps + [Probe(q, a, k) for q, a, k in f if a] for f, ps in zip(facts, asked, strict=True)]


__all__ = ["ABOUT_KEY", "PROBERS", "Probe", "Prober", "TextProber", "WorldProber", "anchors", "default_prober", "fronted", "named", "register_prober", "resolved", "sentences", "subject", "things", "told", "wh_word"]
