"""Answer normalisation, exact match and token F1 (SQuAD-style); abstentions."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from reverie.world.templates import UNKNOWN_ANSWER

_PUNCT = set(string.punctuation)


def normalize(s: str) -> str:
    """Lower case, drop punctuation and articles, squeeze whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str, gold: str) -> float:
    return float(normalize(pred) == normalize(gold))


def token_f1(pred: str, gold: str) -> float:
    p, g = normalize(pred).split(), normalize(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def abstains(pred: str) -> bool:
    """Whether an answer is the model saying it does not know (``templates.UNKNOWN_ANSWER``)."""
    return pred.strip() == UNKNOWN_ANSWER


def abstain_rate(preds: Sequence[str]) -> float:
    """Share of ``preds`` that are abstentions."""
    return sum(map(abstains, preds)) / max(len(preds), 1)
