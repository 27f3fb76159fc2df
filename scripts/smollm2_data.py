"""Passages for a SmolLM2 GPU lease (`scripts/gpu_smollm2.sh`), from the fetched training split.

- validation: 48 passages of the SQuAD dev articles that hash into the validation group
  (3 of the 35 training articles); those articles are kept out of the pool. The monitor
  picks its best step on these, never on the test split that `reverie bench qa` uses.
- pool: every other passage: Wikipedia (SQuAD dev, new_wiki), NYT, Reddit and Amazon (about
  9 100; the third lease took the Wikipedia ones and NYT, Reddit and Amazon ones up to 5000,
  `POOL=5000`).

Usage: .venv/bin/python scripts/smollm2_data.py  (writes .gpuinit/train.jsonl.gz, .gpuinit/val.jsonl.gz)
"""

import gzip
import hashlib
import os
import random
import shutil
from pathlib import Path

from reverie.world import passages as P

POOL = int(os.environ.get("POOL", 0)) or None
"""Passages in the pool (all by default)."""
WIKI = ("squad", "new_wiki")
"""The Wikipedia sources of the training split."""


def validation_titles(train: list[P.Passage]) -> list[str]:
    titles = sorted({p.title for p in train if p.source == "squad"})
    return [t for t in titles if int(hashlib.sha256(("val:" + t).encode()).hexdigest(), 16) % 7 == 0]


def val_and_pool(seed: int = 0) -> tuple[list[P.Passage], list[P.Passage]]:
    train = P.load("train")
    vt = set(validation_titles(train))
    r = random.Random(seed)
    val = r.sample([p for p in train if p.source == "squad" and p.title in vt], 48)
    rest = [p for p in train if not (p.source == "squad" and p.title in vt)]
    wiki = [p for p in rest if p.source in WIKI]
    other = [p for p in rest if p.source not in WIKI]
    pool = wiki + r.sample(other, len(other) if POOL is None else POOL - len(wiki))
    r.shuffle(pool)
    return val, pool


def _write_gz(passages: list[P.Passage], path: Path) -> None:
    tmp = path.with_suffix("")
    P.save_jsonl(passages, tmp)
    with tmp.open("rb") as f, gzip.open(path, "wb") as g:
        shutil.copyfileobj(f, g)
    tmp.unlink()


if __name__ == "__main__":
    val, pool = val_and_pool()
    Path(".gpuinit").mkdir(exist_ok=True)
    _write_gz(val, Path(".gpuinit/val.jsonl.gz"))
    _write_gz(pool, Path(".gpuinit/train.jsonl.gz"))
    print(f"validation {len(val)} passages, pool {len(pool)} ({sum(p.source in WIKI for p in pool)} Wikipedia)")
