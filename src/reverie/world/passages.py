"""Real reading-comprehension passages: SQuAD-, Quoref- and DROP-derived tasks from the
``bigbench==1.0.0`` source archive, fetched from the package registry on first use.

Nothing of their text is in this repository: :func:`fetch` downloads the archive once,
checks its sha256, extracts the few task files used into the cache
(``~/.cache/reverie/data``, see :func:`reverie.paths.cache_root`) and deletes the
358 MB archive.

Splits are by passage and never overlap:
- ``test``: the SQuAD v1.1 dev articles (bigbench's ``squad_shifts/squaddev``) whose title
  hashes into the held-out fifth: the ``relative_qa`` target's set;
- ``train``: the other SQuAD dev articles and the four SQuAD-shifts domains (new Wikipedia
  articles, New York Times, Reddit, Amazon reviews);
- ``quoref`` and ``drop``: evaluation only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reverie.errors import DataUnavailable, ReverieError
from reverie.paths import cache_root
from reverie.utils import read_jsonl, sha256_file

ARCHIVE = "bigbench-1.0.0.tar.gz"
SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
TASKS = "bigbench-1.0.0/bigbench/benchmark_tasks/"
SQUAD = {"squad": "squad_shifts/squaddev_v1.1.json", "new_wiki": "squad_shifts/new_wiki_v1.0.json",
         "nyt": "squad_shifts/nyt_v1.0.json", "reddit": "squad_shifts/reddit_v1.0.json",
         "amazon": "squad_shifts/amazon_reviews_v1.0.json"}
INSTRUCT = {"quoref": "natural_instructions/subtask002_quoref_answer_generation/task.json",
            "drop": "natural_instructions/subtask028_drop_answer_generation/task.json"}
SPLITS = ("train", "test", "quoref", "drop")
HELD_OUT = 5
"""One SQuAD dev article in this many (by title hash) is held out for testing."""


@dataclass
class Passage:
    """One passage and the questions asked about it."""

    id: str
    """sha256 of the text (first 16 hex digits)."""
    source: str
    """squad, new_wiki, nyt, reddit, amazon, quoref or drop."""
    title: str
    text: str
    qas: list[tuple[str, list[str]]] = field(default_factory=list)
    """(question, accepted answers)."""


def data_dir() -> Path:
    return cache_root() / "data" / "bigbench"


def _index_url() -> str:
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def download_sdist(project: str, archive: str, sha256: str, dest: Path, quiet: bool = False) -> Path:
    """``archive`` from the registry's simple index of ``project`` into ``dest`` (kept if a
    copy with that sha256 is already there); every way it can fail is one line.

    Why not ``pip download``: it builds a source archive's metadata first, which bigbench
    1.0.0's direct-URL dependency and gensim's build requirements make fail before anything
    is saved. The same file is taken from the simple index instead and its sha256 checked."""
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    index = f"{_index_url()}/{project}/"
    instead = f"a copy of {archive} (sha256 {sha256}) placed at {dest} is used instead"
    try:
        page = urllib.request.urlopen(index, timeout=60).read().decode()
    except OSError as e:
        raise DataUnavailable(f"cannot reach {index} ({e}); {instead}") from e
    links = re.findall(r'href="([^"]+)"', page)
    url = next((u for u in links if archive in u), None)
    if url is None:  # seen: an index that lists bigbench 0.0.1 alone
        listed = ", ".join(sorted({u.split("#")[0].rsplit("/", 1)[-1] for u in links})) or "nothing"
        raise DataUnavailable(f"{index} does not offer {archive} (it lists: {listed}); {instead}")
    url = urllib.parse.urljoin(index, url.split("#")[0])
    if not quiet:
        print(f"fetching {url}", flush=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=300) as r, part.open("wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
    except OSError as e:
        raise DataUnavailable(f"cannot fetch {url} ({e}); {instead}") from e
    if sha256_file(part) != sha256:
        part.unlink()
        raise ReverieError(f"{archive} from {index} does not match its sha256; not used")
    part.rename(dest)
    return dest


def fetch(quiet: bool = False) -> Path:
    """Download and extract the task files once; returns the data folder."""
    dest = data_dir()
    if (dest / "DONE").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    tgz = download_sdist("bigbench", ARCHIVE, SHA256, dest.parent / ARCHIVE, quiet)
    with tarfile.open(tgz) as t:
        for name, member in (SQUAD | INSTRUCT).items():
            src = t.extractfile(TASKS + member)
            assert src is not None
            tmp = dest / f"{name}.json.tmp"
            tmp.write_bytes(src.read())
            tmp.rename(dest / f"{name}.json")
    (dest / "DONE").write_text(SHA256)
    tgz.unlink()
    return dest


def passage_id(text: str) -> str:
    """A passage's id: the first 16 hex digits of its text's sha256."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def held_out(title: str) -> bool:
    return int(hashlib.sha256(title.encode()).hexdigest(), 16) % HELD_OUT == 0


def _squad(source: str, path: Path) -> Iterator[tuple[str, Passage]]:
    for art in json.loads(path.read_text())["data"]:
        title = art.get("title", "")
        split = "test" if source == "squad" and held_out(title) else "train"
        for p in art["paragraphs"]:
            qas = [(q["question"], [a["text"] for a in q["answers"]]) for q in p["qas"] if q.get("answers")]
            if qas:
                yield split, Passage(passage_id(p["context"]), source, title, p["context"], qas)


def _instruct(source: str, path: Path) -> Iterator[tuple[str, Passage]]:
    by_text: dict[str, Passage] = {}
    for ex in json.loads(path.read_text())["examples"]:
        body = ex["input"].removeprefix("Passage: ")
        text, _, rest = body.partition("\nQuestion: ")
        question = rest.split("\nAnswer type:")[0].strip()
        text = text.strip()
        answers = [t.strip().removesuffix(".") for t in ex["target"]] if isinstance(ex["target"], list) else [str(ex["target"])]
        if not text or not question:
            continue
        p = by_text.setdefault(text, Passage(passage_id(text), source, "", text))
        p.qas.append((question, answers))
    for p in by_text.values():
        yield source, p


def load(split: str, quiet: bool = True) -> list[Passage]:
    """Passages of one split (see the module docstring), in a fixed order."""
    if split not in SPLITS:
        raise ReverieError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    d = fetch(quiet)
    out: list[Passage] = []
    if split in ("train", "test"):
        for source in SQUAD:
            out += [p for s, p in _squad(source, d / f"{source}.json") if s == split]
    else:
        out = [p for _, p in _instruct(split, d / f"{split}.json")]
    first: dict[str, Passage] = {}
    for p in out:  # a passage text repeated across task files counts once
        first.setdefault(p.id, p)
    return list(first.values())


def save_jsonl(passages: list[Passage], path: str | Path) -> None:
    """Passages as JSON lines (for a machine that cannot reach the registry)."""
    Path(path).write_text("".join(json.dumps(p.__dict__) + "\n" for p in passages))


def load_jsonl(path: str | Path) -> list[Passage]:
    p = Path(path)
    if not p.is_file():
        raise ReverieError(f"passages file not found: {p}")
    try:
        return [Passage(r["id"], r["source"], r["title"], r["text"], [(q, list(a)) for q, a in r["qas"]])
                for r in read_jsonl(p)]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReverieError(f"passages file {p}: not passages as save_jsonl writes them ({type(e).__name__}: {e})") from None
