"""Hand-written evaluation sets for a real chat model that has learned a text during sleep.

Four sets live in ``assets/devsets/`` as JSON, each split into ``dev`` (to tune on) and
``test`` (to report), items alternating so both halves hold the same kind of material:

- ``bios``: short biographies of invented people in many voices, six questions each, and a
  later update (a change of employer) with the question whose answer it changes;
- ``notes``: the notes a person keeps (servers, codes, appointments, recipes), two or three
  questions each;
- ``wiki``: paragraphs of the Wikipedia articles ``reverie data fetch`` keeps, three
  questions each. The text is not shipped: an item names its article, the paragraph's index
  in ``text.split("\\n\\n")`` (how :mod:`reverie.world.wiki` joins an article's paragraphs)
  and the sha256 of the paragraph, and :func:`load` reads it from the fetched articles;
- ``general``: general-knowledge questions the model answers from its own weights, asked
  before and after learning to see that unrelated answers stay put.

The questions are phrased as a person would ask them, not in the forms the learner asks
itself while it learns, so a right answer shows recall rather than a memorised probe.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reverie.errors import ReverieError

NAMES = ("bios", "notes", "wiki", "general")
SPLITS = ("dev", "test", "all")
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "devsets"


@dataclass(frozen=True)
class Question:
    """One question with its short answer ``a`` and other accepted spellings ``alts``."""

    q: str
    a: str
    alts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """One piece of material to learn and the questions asked about it afterwards.

    ``text`` is what the model reads ("" for ``general``, whose items are one question
    each, asked without reading anything). For ``bios``, ``update_text`` is read after
    ``text``; ``update`` is then asked, with ``update_old`` the answer it had before (a
    model that still gives it has not taken the update in). ``title`` names a ``wiki``
    item's article. ``set`` is the name of the set the item comes from.
    """

    id: str
    split: str
    text: str
    questions: tuple[Question, ...]
    update: Question | None = None
    update_text: str | None = None
    set: str = ""
    update_old: str | None = None
    title: str = ""


def _question(d: dict[str, Any]) -> Question:
    return Question(str(d["q"]), str(d["a"]), tuple(str(x) for x in d.get("alts", ())))


def _raw(name: str) -> list[dict[str, Any]]:
    """The items of one set's JSON file, as stored."""
    path = ASSETS / f"{name}.json"
    try:
        items = json.loads(path.read_text(encoding="utf-8"))["items"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReverieError(f"{path} is missing or damaged ({type(e).__name__}: {e})") from None
    return list(items)


def _articles() -> dict[str, str]:
    """Title to text of the fetched Wikipedia articles; a clear error when not fetched."""
    from reverie.utils import read_jsonl
    from reverie.world.wiki import data_dir

    path = data_dir() / "articles.jsonl"
    if not path.is_file():
        raise ReverieError(f"the Wikipedia articles are not fetched ({path} is missing): "
                           "run `reverie data fetch`")
    try:
        return {str(r["title"]): str(r["text"]) for r in read_jsonl(path)}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReverieError(f"{path} is damaged ({type(e).__name__}: {e}); "
                           "delete it and run `reverie data fetch`") from None


def paragraph(articles: dict[str, str], title: str, index: int, sha256: str) -> str:
    """Paragraph ``index`` of article ``title`` (its text split on blank lines), checked
    against ``sha256``: a different dump or parser gives a clear error, not wrong text."""
    if title not in articles:
        raise ReverieError(f"the fetched Wikipedia articles have no article {title!r}: "
                           "delete ~/.cache/reverie/data/wiki and run `reverie data fetch`")
    paras = articles[title].split("\n\n")
    text = paras[index] if 0 <= index < len(paras) else ""
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != sha256:
        raise ReverieError(f"paragraph {index} of the Wikipedia article {title!r} is not the one "
                           "the wiki dev set was written for (sha256 differs): the fetched "
                           "articles come from another dump or parser")
    return text


FILL_WORDS = (40, 150)
"""Length in words of a filler paragraph (about a dev-set text's)."""


def filler(n: int, articles: dict[str, str] | None = None) -> list[str]:
    """Up to ``n`` paragraphs of the fetched Wikipedia articles that no dev set uses, of
    ``FILL_WORDS`` words, one article after another in title order, paragraph by paragraph
    (so a fill spreads over many articles): texts that fill a memory (retention_N), never
    asked about. ``articles``: title -> text (default: those of `reverie data fetch`)."""
    articles = _articles() if articles is None else articles
    used = {(str(d["title"]), int(d["paragraph"])) for d in _raw("wiki")}
    paras = {t: articles[t].split("\n\n") for t in sorted(articles)}
    lo, hi = FILL_WORDS
    out: list[str] = []
    for i in range(max((len(v) for v in paras.values()), default=0)):
        for t, v in paras.items():
            if i < len(v) and (t, i) not in used and lo <= len(v[i].split()) <= hi:
                out.append(v[i])
                if len(out) == n:
                    return out
    return out


def load(name: str, split: str = "test") -> list[Item]:
    """The items of set ``name`` (bios, notes, wiki or general) in ``split`` (dev, test or
    all), in file order. ``wiki`` needs the articles of `reverie data fetch`."""
    if name not in NAMES:
        raise ReverieError(f"unknown dev set {name!r}: one of {', '.join(NAMES)}")
    if split not in SPLITS:
        raise ReverieError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    raw = [d for d in _raw(name) if split == "all" or d["split"] == split]
    articles = _articles() if name == "wiki" else {}
    out = []
    for d in raw:
        if name == "general":
            out.append(Item(d["id"], d["split"], "", (_question(d),), set=name))
            continue
        if name == "wiki":
            text = paragraph(articles, d["title"], int(d["paragraph"]), d["sha256"])
        else:
            text = d["text"]
        up = d.get("update")
        out.append(Item(d["id"], d["split"], text, tuple(_question(q) for q in d["questions"]),
                        update=_question(up) if up else None,
                        update_text=up["text"] if up else None,
                        set=name,
                        update_old=up["old"] if up else None,
                        title=d.get("title", "")))
    return out


def normalise(s: str) -> str:
    """Lower case, accents dropped, thousands separators dropped (``250,000`` is
    ``250000``), every run of punctuation or white space one space: the form in which
    :func:`correct` compares a reply with an answer."""
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    s = re.sub(r"(?<=\d)[,.](?=\d{3}(?!\d))", "", s)
    return " ".join(re.sub(r"[\W_]+", " ", s).split())


def correct(reply: str, q: Question) -> bool:
    """Whether ``reply`` contains the answer or one of its alts, compared in
    :func:`normalise`'s form and on word boundaries (``nine`` is not found in
    ``nineteen``), so case, accents and punctuation do not decide the score."""
    r = f" {normalise(reply)} "
    return any(n and f" {n} " in r for n in (normalise(x) for x in (q.a, *q.alts)))
