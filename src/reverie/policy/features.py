"""What the consolidation policy sees of each buffered observation.

One row of :data:`FEATURES` per observation, computed from the night's buffer (texts in
reading order), the memory's ledger (the excerpts of consolidated items, as the ledger
stores them: the first 240 characters) and the base model's loss on each text. The same
function serves the training environment and the ``learned`` selector inside ``sleep()``,
so the policy sees in use exactly what it saw in training.

Features (all scaled to about [0, 1]):

=============== ============================================================================
valid           1 for an observation, 0 for a padding row
surprise        the base model's mean next-token loss on the text with no context (nats / 4):
                low for what it already knows (base-population biographies), highest for
                chatter it never read (haystack text: about 14 against 3 for a biography)
surprise_rank   rank of ``surprise`` in tonight's buffer (1 = most surprising)
novelty         1 - the largest share of the text's proper-noun tokens found in one ledger
                excerpt (0: everything it names is already stored together)
in_ledger       the text's person (entity) is named in the ledger
mentions        observations in tonight's buffer about the same person (/ 4): people who are
                talked about are asked about
mentions_ledger ledger excerpts naming the person (/ 4)
entity_rank     rank of this observation among tonight's about the same person (/ 3; 0 for the
                longest, non-duplicate one): one item per person is usually enough
duplicate       an exact copy of an earlier buffered observation or of a stored item
recency         position in reading order (1 = read last)
length          words / 60
proper_share    proper-noun tokens / words (chatter has none)
no_entity       no person could be read off the text
fill            budget / observations tonight (how selective the night must be)
=============== ============================================================================

The person of a text is read by the world prober (``reverie.sleep.probe``: the full name
each biography sentence is about); proper-noun tokens are capitalised words that are not
a sentence's first word, or a first word followed by another capitalised word (a name).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np
import torch

from reverie.base.model import BaseModel

FEATURES: tuple[str, ...] = (
    "valid", "surprise", "surprise_rank", "novelty", "in_ledger", "mentions", "mentions_ledger",
    "entity_rank", "duplicate", "recency", "length", "proper_share", "no_entity", "fill",
)
N_FEATURES = len(FEATURES)
EXCERPT = 240
"""Characters of a consolidated text the ledger keeps (``Memory.add``): all the policy
knows of a stored item."""

_WORD = re.compile(r"[A-Za-z][A-Za-z'.-]*")


@lru_cache(maxsize=65536)
def entity(text: str) -> str | None:
    """The person a text is about: the full name most of its sentences state facts of."""
    from reverie.sleep.probe import WorldProber

    names = Counter(k.split("|", 1)[0] for _, k in WorldProber().questions(text))
    return names.most_common(1)[0][0] if names else None


@lru_cache(maxsize=65536)
def proper_tokens(text: str) -> frozenset[str]:
    """Capitalised words that are not a plain sentence opener (see the module notes)."""
    out = set()
    for sent in re.split(r"(?<=[.!?])\s+", text.strip()):
        words = _WORD.findall(sent)
        for i, w in enumerate(words):
            if not w[0].isupper():
                continue
            if i > 0 or (len(words) > 1 and words[1][0].isupper()):
                out.add(w.strip(".'"))
    return frozenset(out)


def n_words(text: str) -> int:
    return len(_WORD.findall(text))


@torch.no_grad()
def surprise(bm: BaseModel, texts: list[str], batch: int = 32) -> list[float]:
    """Mean next-token loss (nats) of each text under ``bm`` with no context."""
    out: list[float] = []
    pad = bm.tokenizer.pad_token_id
    for i in range(0, len(texts), batch):
        rows = [bm.encode(t)[: bm.max_length] for t in texts[i : i + batch]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])  # (B, T), right-padded
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logits = bm.model(ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
        m = mask[:, 1:].float()
        out += (nll * m).sum(1).div(m.sum(1).clamp(min=1)).tolist()
    return out


def item_features(texts: list[str], shas: list[str], surprises: list[float], ledger: list[str],
                  known: set[str], budget: int) -> np.ndarray:
    """Feature rows (len(texts), N_FEATURES) for tonight's buffer; ``ledger``: excerpts of
    the stored items; ``known``: their source hashes."""
    n = len(texts)
    X = np.zeros((n, N_FEATURES), dtype=np.float32)
    if n == 0:
        return X
    f = {name: i for i, name in enumerate(FEATURES)}
    ents = [entity(t) for t in texts]
    led_props = [proper_tokens(e[:EXCERPT]) for e in ledger]
    led_text = [e[:EXCERPT] for e in ledger]
    s = np.asarray(surprises, dtype=np.float32)
    order = np.argsort(np.argsort(s, kind="stable"), kind="stable")  # 0 = least surprising
    seen: set[str] = set(known)
    dup = []
    for sha in shas:
        dup.append(sha in seen)
        seen.add(sha)
    count = Counter(e for e in ents if e is not None)
    # Rank among tonight's observations of one person: non-duplicates first, longer first.
    rank: dict[int, int] = {}
    for name in count:
        idx = sorted((i for i in range(n) if ents[i] == name), key=lambda i: (dup[i], -len(texts[i]), i))
        rank |= {i: k for k, i in enumerate(idx)}
    for i, t in enumerate(texts):
        props = proper_tokens(t)
        words = max(1, n_words(t))
        e = ents[i]
        share = max((len(props & lp) / len(props) for lp in led_props), default=0.0) if props else 1.0
        X[i, f["valid"]] = 1.0
        X[i, f["surprise"]] = s[i] / 4.0
        X[i, f["surprise_rank"]] = order[i] / max(1, n - 1)
        X[i, f["novelty"]] = 1.0 - share
        X[i, f["in_ledger"]] = float(e is not None and any(e in lt for lt in led_text))
        X[i, f["mentions"]] = (count[e] if e is not None else 0) / 4.0
        X[i, f["mentions_ledger"]] = (sum(e in lt for lt in led_text) if e is not None else 0) / 4.0
        X[i, f["entity_rank"]] = min(rank.get(i, 0), 3) / 3.0
        X[i, f["duplicate"]] = float(dup[i])
        X[i, f["recency"]] = i / max(1, n - 1)
        X[i, f["length"]] = words / 60.0
        X[i, f["proper_share"]] = len(props) / words
        X[i, f["no_entity"]] = float(e is None)
        X[i, f["fill"]] = budget / n
    return np.clip(X, 0.0, 8.0)


def pad(X: np.ndarray, max_items: int) -> np.ndarray:
    """Rows padded with zeros (``valid`` = 0) to ``max_items``: (max_items, N_FEATURES)."""
    out = np.zeros((max_items, N_FEATURES), dtype=np.float32)
    out[: min(len(X), max_items)] = X[:max_items]
    return out


__all__ = ["FEATURES", "N_FEATURES", "entity", "item_features", "pad", "proper_tokens", "surprise"]
