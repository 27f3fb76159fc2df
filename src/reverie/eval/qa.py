"""The question-answering helpers under the names ``reverie.eval.bench_sequential`` imports
them by. They live below evaluation, where the training recipes' monitors use them too:
:mod:`reverie.base.qa` (sampling, asking, scoring) and :mod:`reverie.hypernet.qa` (asking
under adapters); new code imports them from there."""

from reverie.base.qa import ask, documents, sample_questions, score
from reverie.hypernet.qa import ask_injected

__all__ = ["ask", "ask_injected", "documents", "sample_questions", "score"]
