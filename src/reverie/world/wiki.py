"""Wikipedia articles: the shortened English Wikipedia dump in gensim's test data
(``gensim==4.4.0``'s source archive), fetched from the package registry on first use.

As with the reading-comprehension passages (:mod:`reverie.world.passages`), nothing of the
text is in this repository: :func:`fetch` downloads the 23 MB archive once, checks its
sha256, reads the one dump file in it, keeps the articles as plain text
(``~/.cache/reverie/data/wiki/articles.jsonl``) and deletes the archive.

The dump holds 206 pages; redirects, disambiguation pages and pages outside the article
namespace are dropped, which leaves 97 articles. Markup goes through mwparserfromhell
(references, templates, headings, tables and images removed), and only prose paragraphs
are kept. The articles carry no questions: they are real prose for timing injection on a
real model and for the demo. Split by title hash as the SQuAD articles are: ``test`` is the
held-out fifth (21 articles; 76 in ``train``).
"""

from __future__ import annotations

import bz2
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from reverie.errors import ReverieError
from reverie.paths import cache_root
from reverie.utils import read_jsonl
from reverie.world.passages import Passage, download_sdist, held_out, passage_id

ARCHIVE = "gensim-4.4.0.tar.gz"
SHA256 = "a3f5b626da5518e79a479140361c663089fe7998df8ba52d56e1ded71ac5bdf5"
DUMP = "gensim-4.4.0/gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SPLITS = ("train", "test", "all")
MIN_PARAGRAPH = 100
"""Characters; shorter blocks are list items or caption leftovers, not prose."""


def data_dir() -> Path:
    return cache_root() / "data" / "wiki"


def fetch(quiet: bool = False) -> Path:
    """Download gensim's source archive once, keep its Wikipedia articles as plain text;
    returns the data folder."""
    dest = data_dir()
    if (dest / "articles.jsonl").is_file():
        return dest
    tgz = download_sdist("gensim", ARCHIVE, SHA256, dest.parent / ARCHIVE, quiet)
    with tarfile.open(tgz) as t:
        src = t.extractfile(DUMP)
        if src is None:
            raise ReverieError(f"{ARCHIVE} holds no {DUMP}")
        articles = list(parse(bz2.open(src)))
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / "articles.jsonl.tmp"  # written whole, then renamed: never half there
    tmp.write_text("".join(json.dumps({"title": p.title, "text": p.text}) + "\n" for p in articles))
    tmp.rename(dest / "articles.jsonl")
    tgz.unlink()
    return dest


def parse(xml: IO[bytes]) -> Iterator[Passage]:
    """The articles of a MediaWiki XML dump, as plain prose (redirects and other
    namespaces skipped; pages with fewer than two prose paragraphs too)."""
    for _, el in ET.iterparse(xml):
        if not el.tag.endswith("}page"):
            continue
        field = {c.tag.rsplit("}", 1)[-1]: c for c in el.iter()}
        title, ns, wikitext = field["title"].text or "", field["ns"].text, field["text"].text or ""
        el.clear()  # the dump is read as a stream; keep memory flat
        if ns != "0" or "redirect" in field or "(disambiguation)" in title or wikitext.lstrip().lower().startswith("#redirect"):
            continue
        text = plain(wikitext)
        if text.count("\n\n") >= 1:
            yield Passage(passage_id(text), "wikipedia", title, text)


def plain(wikitext: str) -> str:
    """Prose paragraphs of one article's markup, separated by blank lines."""
    try:
        import mwparserfromhell as mw  # the `real` extra; the field's own wikitext parser
    except ModuleNotFoundError:
        raise ReverieError("Wikipedia articles need mwparserfromhell: run `pip install mwparserfromhell` "
                           "(or install reverie with its `real` extra)") from None

    code = mw.parse(wikitext)
    drop = [*code.filter_tags(matches=lambda n: str(n.tag).lower() in ("ref", "gallery", "math")),
            *code.filter_headings(),  # a heading left in runs into its first paragraph
            *code.filter_wikilinks(matches=lambda n: str(n.title).strip().lower().startswith(("file:", "image:", "category:")))]
    for node in drop:
        try:
            code.remove(node)
        except ValueError:  # inside a node removed already
            pass
    text = code.strip_code(normalize=True, collapse=True)
    paras = []
    for block in re.split(r"\n\s*\n", text):
        block = re.sub(r"\s+", " ", block).strip()
        # table cells and gallery lines survive strip_code with their "|"
        if len(block) >= MIN_PARAGRAPH and "|" not in block and block.endswith((".", "!", "?", '"', ")")):
            paras.append(re.sub(r"\((?:[;,] ?)+", "(", block).replace(" ()", "").replace("( ", "(").replace(" ,", ","))
    return "\n\n".join(paras)


def load(split: str = "all", quiet: bool = True) -> list[Passage]:
    """Articles of one split, in the dump's order (no questions: ``qas`` is empty)."""
    if split not in SPLITS:
        raise ReverieError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    path = fetch(quiet) / "articles.jsonl"
    try:
        out = [Passage(passage_id(r["text"]), "wikipedia", r["title"], r["text"]) for r in read_jsonl(path)]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReverieError(f"{path} is damaged ({type(e).__name__}: {e}); delete it and it is fetched again") from None
    return [p for p in out if split == "all" or held_out(p.title) == (split == "test")]


def first_sentence(text: str) -> str:
    """The article's opening sentence: what a question about its subject is scored on."""
    m = re.match(r"(.+?[.!?])(\s|$)", text.strip())
    return m.group(1) if m else text.strip()
